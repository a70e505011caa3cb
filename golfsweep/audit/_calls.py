"""Calls: the script's own functions and methods (inlined), library calls (modelled), and the
events calls stand for: scoring, gradient steps, training-data reads, the artifact's round trip
(a mixin of the interpreter in :mod:`._interp`)."""

from __future__ import annotations

import ast
import builtins
import os
import posixpath
from dataclasses import replace

from golfsweep.audit import _vocab as vocab
from golfsweep.audit._decode import SOURCE_ATTR
from golfsweep.audit._exprs import fold
from golfsweep.audit._state import Frame, State, dotted, join_states
from golfsweep.audit._values import (CLEAN, EMPTY, TEXT, TRAIN_SRC, UNK, VAL_SRC, FuncRef, V, const, join, keep,
                                     vmap)

__all__ = ["CallMixin"]

OPTIMIZER = "<optimizer>"  # pseudo class of ``torch.optim`` optimizers: their state is not the model's
_PATH_FOLDS = {"os.path.join": posixpath.join, "os.path.dirname": posixpath.dirname,
               "os.path.basename": posixpath.basename, "os.path.splitext": posixpath.splitext,
               "os.path.expanduser": os.path.expanduser}


class CallMixin:
    """Evaluates calls. Needs the interpreter's state, expressions and statements."""

    @staticmethod
    def funcref(node: ast.AST, owner: str | None, closure: object | None) -> FuncRef:
        return FuncRef(node, owner, closure)

    def _ev_args(self, node: ast.Call, st) -> tuple[list[V], dict[str | None, V]]:
        args: list[V] = []
        for a in node.args:
            v = self.ev(a, st)
            if isinstance(a, ast.Starred) and v.items is not None:
                args.extend(v.items)  # forwarding ``fn(*args)``: each to its place
            else:
                args.append(v)
        kwargs: dict[str | None, V] = {}
        for k in node.keywords:
            v = self.ev(k.value, st)
            pairs = v.kwitems if k.arg is None and v.kwitems is not None else ((k.arg, v),)
            for name, w in pairs:
                kwargs[name] = join(kwargs[name], w) if name in kwargs else w
        return args, kwargs

    @staticmethod
    def _arg_nodes(node: ast.Call) -> list[ast.expr]:
        return list(node.args) + [k.value for k in node.keywords]

    # -- environment -----------------------------------------------------------------------------

    def env_read(self, key: object, default: V | None, *, has_default: bool, presence: bool = False) -> V:
        """``os.environ.get(key, default)`` (or ``key in os.environ``): the pinned value when the audit
        was given one, else the script's default, remembered as a switch on ``key``."""
        if not isinstance(key, str):
            return TEXT
        self.judge.events += 1
        if key in self.pinned:
            return const(True) if presence else const(self.pinned[key])
        if key in vocab.LAUNCHER_ENV:
            return V() if presence else TEXT
        keys = frozenset({key})
        if presence:
            return const(False, keys)
        if not has_default:
            return TEXT  # a required setting: its value is not known here
        if default is None:
            return const(None, keys)
        return replace(default, envkeys=default.envkeys | keys) if default.known() else TEXT

    # -- dispatch --------------------------------------------------------------------------------

    def ev_Call(self, node: ast.Call, st) -> V:
        func = node.func
        if isinstance(func, ast.Attribute):
            recv = self.ev(func.value, st)
            if func.attr == "backward" and not recv.lib:
                self._ev_args(node, st)
                self._update(recv, node, st)
                return CLEAN
            return self._method_call(node, func, recv, st)
        fv = self.ev(func, st)
        args, kwargs = self._ev_args(node, st)
        return self._invoke(node, fv, args, kwargs, st)

    def _update(self, v: V, node: ast.AST, st) -> None:
        if not self.judge.update(st.led, self.where(node), v, self.first_pass) and v.unk and st.led.evaluating:
            self.note_unknown(f"line {node.lineno}: gradient step during evaluation on data whose origin the "
                              f"audit cannot trace")

    def _is_optimizer(self, v: V) -> bool:
        return bool(v.inst) and all(c == OPTIMIZER or any(b.rsplit(".", 1)[-1].endswith("Optimizer")
                                                          for k in self.class_chain(c)
                                                          for b in getattr(self.classes.get(k), "bases", []))
                                    for c in v.inst)

    def _method_call(self, node: ast.Call, func: ast.Attribute, recv: V, st) -> V:
        attr = func.attr
        if recv.lib:
            args, kwargs = self._ev_args(node, st)
            return self._lib_call(node, f"{recv.lib}.{attr}", args, kwargs, st)
        if attr in ("eval", "train") and not node.args:
            return CLEAN
        if attr == "state_dict" and not node.args and not self._is_optimizer(recv):
            return V(snap=self.judge.weights(st.led, recv.models))  # with the updates they have seen
        if attr == "load_state_dict" and node.args and not self._is_optimizer(recv):
            args, kwargs = self._ev_args(node, st)
            if args[0].snap is not None:
                self.judge.load_weights(st.led, args[0].snap, recv.models)
            return CLEAN
        if attr in ("parameters", "named_parameters") and not node.args and recv.models \
                and not self._is_optimizer(recv):  # the weights themselves, with the updates they have seen
            return replace(recv.data(), snap=self.judge.weights(st.led, recv.models))
        saved = self.saved_weights(node.args[0], st) if attr == "copy_" and len(node.args) == 1 and recv.models \
            else None
        if saved is not None:  # ``p.data.copy_(saved[n])``: saved weights put back, as load_state_dict
            self.judge.load_weights(st.led, saved, recv.models)
            return CLEAN
        if attr == "requires_grad_" and recv.models and not self._is_optimizer(recv):
            args, kwargs = self._ev_args(node, st)
            self.set_requires_grad(recv, (args[:1] or [kwargs.get("requires_grad", const(True))])[0], st)
            return recv
        targets = self._resolve_method(recv, attr)  # a method of one of the script's classes
        if targets:
            args, kwargs = self._ev_args(node, st)
            res, inlined = None, []
            for owner, fn in targets:
                cls = self.classes.get(owner)
                if cls is not None and cls.is_module and not self.has_update(fn):
                    res = join(res, self._opaque(node, args, kwargs, st, callee=recv))
                else:
                    inlined.append(FuncRef(fn, owner, None))
            if inlined:
                self_val = recv if (recv.inst or recv.classes) else V(inst=frozenset(r.owner for r in inlined))
                res = join(res, self._inline_each(inlined, node, [self_val] + args, kwargs, st, explicit_self=True))
            return res
        held = self.get_attr(recv, attr)
        if held.funcs or held.classes or held.inst:
            args, kwargs = self._ev_args(node, st)
            return self._invoke(node, held, args, kwargs, st)
        args, kwargs = self._ev_args(node, st)
        if recv.known() and attr in vocab.CONST_STR_METHODS and all(a.known() for a in args) and not kwargs:
            try:
                out = getattr(recv.const, attr)(*(a.const for a in args))
                return const(out, recv.envkeys.union(*(a.envkeys for a in args)))
            except Exception:
                pass
        everything = [recv] + args + list(kwargs.values())
        ran = self._run_callbacks(node, everything, st)  # opt.step(closure), pool.submit(fn, xs)
        if ran is not None:
            return ran
        if attr == "write" and any(a.snap is not None for a in args):
            self.judge.serialize(st.led, self.where(node), join(*args).snap)
            return CLEAN
        if attr in vocab.MUTATORS:
            added = join(*args, *kwargs.values()).data()
            self.judge.confirm(st.led, added.pend)
            self.mutate(func.value, added, st)
            return join(recv, added).data() if attr.endswith("_") else CLEAN
        if attr in vocab.METADATA_METHODS:
            return V(idx=join(*everything).idx)
        if attr in vocab.SAME_OBJECT_METHODS and (recv.inst or recv.models):
            return recv  # ``model.to(device).bfloat16()`` is still that model
        if attr in vocab.SINK_METHODS:
            self.judge.confirm(st.led, recv.pend)
        if recv.train and not recv.text and attr not in ("format", "join"):
            self.judge.read_train(st.led, self.where(node), f"`.{attr}()` on training data")
        if attr in ("addmm_", "addmm", "baddbmm", "addr_") and len(node.args) >= 2:
            self.check_gram(node, node.args[-2], node.args[-1], args[-2], args[-1], st)
        if attr in vocab.READ_METHODS:
            return replace(join(*everything).data(), text=False)
        if attr in vocab.PASS_METHODS or not any((a.val or a.out) and not a.text for a in args + list(kwargs.values())):
            res = join(*everything).data()
            if recv.text and attr in ("glob", "rglob", "iterdir", "resolve", "with_suffix", "format", "join",
                                      "replace", "strip", "lower", "upper"):
                return replace(res, text=True)
            return replace(res, text=False) if not recv.text else res
        return self._opaque(node, args, kwargs, st, callee=recv)

    def _run_callbacks(self, node: ast.Call, values: list[V], st) -> V | None:
        """Functions handed to a call the audit cannot see into are assumed to run there, on the
        call's other arguments."""
        callbacks = [f for v in values for f in v.funcs]
        if not callbacks:
            return None
        data = [v.data() for v in values if not v.funcs]
        res = None
        for ref in callbacks:
            res = join(res, self.inline(ref, node, [join(*data)] if data else [], {}, st))
        return res

    def _resolve_method(self, recv: V, attr: str) -> list[tuple[str, ast.AST]]:
        owners = recv.inst | recv.classes
        if owners:
            hits = [self.find_method(c, attr) for c in owners]
            return [h for h in hits if h is not None]
        # Receiver of unknown type: only a method name no library type also has can identify the class
        # (``x.to(device)`` must not become a call to the script's own ``Luts.to``).
        if attr in vocab.COMMON_METHODS or attr.startswith("__") or not recv.plain() or recv.text or recv.known():
            return []
        cands = self.methods.get(attr, [])
        return list(cands) if len(cands) == 1 else []

    def _inline_each(self, refs, node: ast.AST, args: list[V], kwargs: dict, st, explicit_self=False) -> V | None:
        """Call each of several possible functions on its own copy of the state (one of them runs,
        not all in a row), then join what they leave."""
        refs = list(refs)
        if len(refs) <= 1:
            return join(*(self.inline(r, node, args, kwargs, st, explicit_self=explicit_self) for r in refs)) \
                if refs else None
        res, ends = None, []
        for ref in refs:
            path = st.copy()
            res = join(res, self.inline(ref, node, args, kwargs, path, explicit_self=explicit_self))
            ends.append(path)
        joined = join_states(ends)
        st.env, st.led = joined.env, joined.led
        return res

    def _invoke(self, node: ast.Call, fv: V, args: list[V], kwargs: dict, st) -> V:
        res: V | None = self._inline_each(fv.funcs, node, args, kwargs, st)
        for cname in fv.classes:
            res = join(res, self._construct(cname, node, args, kwargs, st))
        if fv.lib:
            res = join(res, self._lib_call(node, fv.lib, args, kwargs, st))
        for cname in fv.inst:
            cls = self.classes.get(cname)
            hit = self.find_method(cname, "__call__")
            if cls is not None and hit is not None and (not cls.is_module or self.has_update(hit[1])):
                res = join(res, self.inline(FuncRef(hit[1], hit[0], None), node, [fv] + args, kwargs, st,
                                            explicit_self=True))
        if res is None:
            if fv.unk and not fv.inst:
                self.note_unknown(f"line {node.lineno}: calls `{dotted(node.func) or '<expression>'}`, which is "
                                  f"not defined in the script")
                return join(UNK, *args, *kwargs.values()).data()
            res = self._opaque(node, args, kwargs, st, callee=fv)
        return res

    def _opaque(self, node: ast.Call, args: list[V], kwargs: dict, st, callee: V | None = None) -> V:
        """A call the audit treats as running a model (or a loss) on its inputs; ``callee`` is the
        model (or method of one) when known, so its events name the model they touch."""
        vals = [v for v in args + list(kwargs.values()) if not v.text]
        data = [v for v in vals if v.val or v.out]
        models = frozenset().union(*(v.models for v in vals), callee.models if callee is not None else EMPTY)
        res = V(out=bool(data), alts=frozenset().union(*(v.alts for v in data)) if data else EMPTY,
                train=any(v.train for v in vals), unk=any(v.unk for v in vals),
                pend=frozenset().union(*(v.pend for v in vals)) if vals else EMPTY,
                idx=frozenset().union(*(v.idx for v in vals)) if vals else EMPTY, models=models)
        const_nodes = {id(n) for n in self._arg_nodes(node) if isinstance(n, ast.Constant)}
        if any(v.train for v, n in zip(args + list(kwargs.values()), self._arg_nodes(node))
               if not v.text and id(n) not in const_nodes):
            self.judge.read_train(st.led, self.where(node), "a model call on training data")
        if self.frame.calib:
            if data:
                self.judge.calibrate(self.where(node), "a forward pass over validation data")
            return res
        content = [v for v in vals if v.val]
        if content:
            alts = frozenset().union(*(v.alts for v in content))
            tag = self.judge.score(st.led, self.where(node), alts, tentative=not st.nograd, models=models)
            if tag is not None:
                res = replace(res, pend=res.pend | {tag})
        return res

    def _construct(self, cname: str, node: ast.Call, args: list[V], kwargs: dict, st) -> V:
        cls = self.classes.get(cname)
        if cls is None:
            return V(inst=frozenset({cname}))
        inst = V(inst=frozenset({cname}), models=frozenset({f"{cname}@{node.lineno}"}) if cls.is_module else EMPTY)
        hit = self.find_method(cname, "__init__")
        if hit is not None:
            # A model's constructor only matters when one of its methods trains on what it stores.
            if not cls.is_module or any(self.has_update(fn) for fn in cls.methods.values()):
                self.inline(FuncRef(hit[1], hit[0], None), node, [inst] + args, kwargs, st, explicit_self=True)
        else:  # dataclass / NamedTuple: fields in declaration order
            fields = [b.target.id for b in cls.node.body
                      if isinstance(b, ast.AnnAssign) and isinstance(b.target, ast.Name)]
            for name, v in zip(fields, args):
                self.store_attr(inst, name, v)
            for k, v in kwargs.items():
                if k is not None:
                    self.store_attr(inst, k, v)
        return inst

    # -- library calls ---------------------------------------------------------------------------

    def _lib_call(self, node: ast.Call, qual: str, args: list[V], kwargs: dict, st) -> V:
        root = qual.lstrip(".").split(".")[0]
        if qual.startswith(".") or root in self.unknown_modules:
            if root not in self.reported_modules:
                self.reported_modules.add(root)
                self.note_unknown(f"line {node.lineno}: calls `{qual.lstrip('.')}` from module `{root}`, whose "
                                  f"code is not part of the audited file")
            return join(UNK, *args, *kwargs.values()).data()
        short = qual.rsplit(".", 1)[-1]
        everything = args + list(kwargs.values())
        if qual in ("os.environ.get", "os.getenv", "os.environ.setdefault") and args and args[0].known():
            default = args[1] if len(args) > 1 else kwargs.get("default")
            return self.env_read(args[0].const, default, has_default=True)
        if qual in ("builtins.getattr",) and len(args) >= 2 and isinstance(args[1].const, str):
            found = self.get_attr(args[0], args[1].const)
            return args[2] if len(args) > 2 and found is CLEAN else found  # nothing stored: the default
        if qual.startswith("builtins.") and short in vocab.CONST_BUILTINS and everything \
                and all(a.known() for a in everything):
            hit = fold(getattr(builtins, short), *(a.const for a in args),
                       envkeys=frozenset().union(*(a.envkeys for a in args)))
            if hit is not None and not kwargs:
                return hit
        if qual.endswith("autograd.grad") or qual.endswith("autograd.backward"):
            self._update(args[0] if args else kwargs.get("outputs", kwargs.get("tensors", CLEAN)), node, st)
            return CLEAN
        if short == "set_grad_enabled" and node.args and isinstance(node.args[0], ast.Constant):
            st.nograd = not bool(node.args[0].value)
            return CLEAN
        if qual in vocab.SERIALIZERS:
            self.judge.serialize(st.led, self.where(node), join(*args[:1]).snap if args else None)
            return CLEAN
        if qual.startswith("torch.optim.") and short[:1].isupper():
            return V(inst=frozenset({OPTIMIZER}))
        if qual.startswith("torch.nn.") and short[:1].isupper() and short not in vocab.LOSS_MODULES:
            # A library module is a model object; one built around the script's modules (DDP(model),
            # Sequential(a, b)) holds their very parameters: the same models, not a new one.
            held = frozenset().union(*(a.models for a in [*args, *kwargs.values()]))
            return V(models=held or frozenset({f"{short}@{node.lineno}"}))
        if qual == "copy.deepcopy" and args and args[0].models:
            new = f"copy@{node.lineno}"
            self.judge.clone_model(st.led, args[0].models, new)
            return replace(args[0], models=frozenset({new}))
        if short in vocab.LOSS_FUNCS and (root == "torch" or qual.startswith("torch.nn.functional.")):
            return self._opaque(node, args, kwargs, st)
        if short in ("matmul", "mm") and root == "torch" and len(node.args) == 2:
            self.check_gram(node, node.args[0], node.args[1], args[0], args[1], st)
        if qual in ("builtins.len", "builtins.isinstance", "builtins.hasattr", "builtins.print", "builtins.id",
                    "builtins.type", "builtins.callable", "builtins.issubclass", "builtins.getattr"):
            return V(idx=join(*everything).idx) if short == "len" else CLEAN
        if qual == "builtins.range":
            if len(args) >= 2 and args[0].idx:
                return V(idx=args[0].idx)
            return V(idx=join(*everything).idx)
        if qual == "builtins.super":
            owner = self.frame.owner
            cls = self.classes.get(owner) if owner else None
            bases = frozenset(b.rsplit(".", 1)[-1] for b in cls.bases if b.rsplit(".", 1)[-1] in self.classes) \
                if cls else EMPTY
            return V(inst=bases)
        if qual in vocab.FILE_READERS or qual in vocab.DESERIALIZERS:
            if any(v.train for v in everything):
                self.judge.read_train(st.led, self.where(node), f"`{short}()` on a training-data path")
            res = replace(join(*everything).data(), text=False)
            if qual in vocab.DESERIALIZERS:
                loaded = self.judge.deserialize(st.led)
                if loaded is not None:  # the artifact, read back
                    res = replace(res, snap=loaded)
            return res
        if qual == "builtins.next" and args and args[0].train and not args[0].text:
            self.judge.read_train(st.led, self.where(node), "`next()` on a training-data iterator")
        res = join(*everything)
        ran = self._run_callbacks(node, everything, st)  # map(f, xs), checkpoint(fn, x), pool.submit(f, x)
        if ran is not None:
            res = join(res, ran)
        res = replace(res.data(), funcs=EMPTY)
        if qual in _PATH_FOLDS and args and all(a.known() and isinstance(a.const, str) for a in args):
            folded = _PATH_FOLDS[qual](*(a.const for a in args))
            res = replace(res, const=folded if isinstance(folded, str) else tuple(folded),
                          envkeys=frozenset().union(*(a.envkeys for a in args)))
        if qual.startswith(vocab.TEXT_PREFIXES):
            res = replace(res, text=True, out=False, pend=EMPTY)
        elif qual not in vocab.TEXT_KEEPING:
            res = replace(res, text=False)
        if not (res.val or res.out) and vocab.is_source_call(short, vocab.VAL_WORDS):
            self.saw_val = True
            res = join(res, VAL_SRC)
        if not res.train and vocab.is_source_call(short, vocab.TRAIN_WORDS):
            res = join(res, TRAIN_SRC)
        return res

    # -- inlining the script's own functions -----------------------------------------------------

    def inline(self, ref: FuncRef, node: ast.AST, args: list[V], kwargs: dict, st, explicit_self: bool = False) -> V:
        fn = ref.node
        fn_name = getattr(fn, "name", "<lambda>")
        if any(f.node is fn for f in self.stack) or len(self.stack) > self.MAX_DEPTH:
            return join(*args, *kwargs.values()).data()
        self.visited.add(id(fn))
        if not self.root_mode and not self.conditions:  # on the path the default configuration runs
            self.reached.add(id(fn))
        decos = [dotted(d.func if isinstance(d, ast.Call) else d) or "" for d in getattr(fn, "decorator_list", [])]
        is_static = any(d.endswith("staticmethod") for d in decos)
        is_classmethod = any(d.endswith("classmethod") for d in decos)
        parent = self.frame
        # Forward hooks gather activations: model calls under them are calibration, not scoring.
        calib = parent.calib or any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("register_forward_hook", "register_forward_pre_hook") for n in _own_nodes(fn))
        nograd = st.nograd
        for d in getattr(fn, "decorator_list", []):
            mode = self.grad_mode(d, st)
            if mode is not None:
                nograd = mode

        if ref.owner and not is_static and not explicit_self:
            args = [V(classes=frozenset({ref.owner})) if is_classmethod else V(inst=frozenset({ref.owner}))] + args
        elif ref.owner and is_classmethod and explicit_self and args:
            args = [V(classes=args[0].inst | args[0].classes)] + args[1:]
        elif ref.owner and is_static and explicit_self:
            args = args[1:]
        env = self._bind(fn, args, kwargs)

        key = None
        if all(v.plain() and not v.alts and not v.idx for v in env.values()):
            key = (id(fn), ref.owner, calib, nograd, tuple(sorted(env.items(), key=lambda kv: kv[0])))
            if key in self.inert:
                return self.inert[key]
        before = self.judge.events

        frame = Frame(f"{ref.owner}.{fn_name}" if ref.owner else fn_name, fn, ref.owner, ref.closure,
                      getattr(node, "lineno", None), calib)
        frame.call_source = getattr(node, SOURCE_ATTR, None)
        inner = State(env, st.led.copy(), nograd)
        self.stack.append(frame)
        try:
            if isinstance(fn, ast.Lambda):
                frame.returns.append(self.ev(fn.body, inner))
                end = inner
            else:
                end = self.exec_block(fn.body, inner)
        finally:
            self.stack.pop()
        final = join_states([end] + frame.return_states)
        if final is not None:
            st.led = final.led
            for p, a in zip(self._param_names(fn), self._arg_nodes(node) if isinstance(node, ast.Call) else []):
                if p in frame.mutated and isinstance(a, ast.Name) and p in final.env:
                    st.env[a.id] = join(self.lookup(a.id, st), final.env[p].data())
        res = join(*frame.returns) if frame.returns else CLEAN
        res = vmap(res, keep(set(self.active)))
        if not (res.val or res.out) and vocab.is_source_call(fn_name, vocab.VAL_WORDS):
            self.saw_val = True
            res = join(res, VAL_SRC)
        if not res.train and vocab.is_source_call(fn_name, vocab.TRAIN_WORDS):
            res = join(res, TRAIN_SRC)
        if key is not None and self.judge.events == before and res.plain():
            self.inert[key] = res
        return res

    @staticmethod
    def _param_names(fn: ast.AST) -> list[str]:
        a = fn.args
        return [p.arg for p in a.posonlyargs + a.args]

    def _bind(self, fn: ast.AST, args: list[V], kwargs: dict) -> dict[str, V]:
        a = fn.args
        positional = a.posonlyargs + a.args
        env: dict[str, V] = {}
        defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
        for i, p in enumerate(positional):
            if i < len(args):
                v = args[i]
            elif p.arg in kwargs:
                v = kwargs[p.arg]
            elif defaults[i] is not None:
                v = self._default(defaults[i])
            else:
                v = CLEAN
            env[p.arg] = self.name_source(p.arg, v, vocab.is_scalar_annotation(p.annotation))
        for p, d in zip(a.kwonlyargs, a.kw_defaults):
            v = kwargs[p.arg] if p.arg in kwargs else (self._default(d) if d is not None else CLEAN)
            env[p.arg] = self.name_source(p.arg, v, vocab.is_scalar_annotation(p.annotation))
        named = {p.arg for p in positional + a.kwonlyargs}
        if a.vararg:
            extra = tuple(args[len(positional):])
            env[a.vararg.arg] = replace(join(*extra).data(), items=extra)
        if a.kwarg:
            extra_kw = tuple((k, v) for k, v in kwargs.items() if k not in named and k is not None)
            env[a.kwarg.arg] = replace(join(*(v for _, v in extra_kw)).data(), kwitems=extra_kw)
        return env

    def _default(self, node: ast.expr) -> V:
        if isinstance(node, ast.Constant):
            return replace(self.string_value(node.value), const=node.value) if isinstance(node.value, str) \
                else const(node.value)
        mod = self.module.state
        return self.ev(node, mod.copy()) if mod is not None else CLEAN


def _own_nodes(fn: ast.AST):
    """Nodes of a function body, not descending into nested functions, classes or lambdas."""
    stack = list(fn.body) if isinstance(fn.body, list) else [fn.body]
    while stack:
        n = stack.pop()
        yield n
        for c in ast.iter_child_nodes(n):
            if not isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                stack.append(c)
