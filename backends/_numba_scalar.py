"""The generated fit kernel of the tiniest networks in scalar form.

``_numba_codegen`` writes a fit kernel as loops over arrays whose sizes are constants.
For a handful of rows and weights that kernel spends its epoch waiting on memory: each
epoch stores the parameters and every intermediate array and reads them back, and the
next epoch's forward pass depends on the last one's stores. ``scalarize`` rewrites such a
kernel's source (its syntax tree) so that every loop over a constant range is unrolled and
every element of the data, the parameters, the optimizer slots and the intermediate
arrays is a local variable: the data are read once, the parameters and slots read before
the epochs and written back after them (and before every early return), and the epochs
run in registers. The statements keep their order, so the numbers are those of the loop
form to the bit (tested). Measured (float64, 4 rows, 2,000 epochs, plain sgd): the seed's
2-1 sigmoid net 104.5 -> 91.3 us, the OR gate's 2-2-1 212.6 -> 189.1 us; with Adam and L2
the OR gate gained 3 %. The unrolled source costs numba more to compile (the OR gate: about
twice the loop form's second; 3-4-2 at 8 rows: 1.2 -> 6.7 s; 8-8-4 at 16 rows ran numba's
SSA pass out of recursion) and past a few dozen weight-rows it is no faster, hence
``SCALAR_MAX_WORK``.
"""
from __future__ import annotations

import ast
import itertools

#: rows x (weights + units) (training rows plus validation rows) up to which a fit kernel
#: is generated in scalar form: the OR gate's 4 x (6 + 3). (Counting the units keeps wide
#: outputs out: a 1-24 softmax net on one row took 15 s to compile in scalar form.)
SCALAR_MAX_WORK = 36


def _clone(node):
    return ast.parse(ast.unparse(node)).body[0]


class _Substitute(ast.NodeTransformer):
    """Replaces the loop variable ``name`` by the constant ``value``."""

    def __init__(self, name, value):
        self.name, self.value = name, value

    def visit_Name(self, node):
        return ast.Constant(self.value) if node.id == self.name else node


def _constant(expr):
    """The value of a constant expression such as ``4 * 2``."""
    return eval(compile(ast.Expression(expr), "<range>", "eval"), {})  # noqa: S307


class _Unroll(ast.NodeTransformer):
    """Unrolls every ``for v in range(<constants>)`` loop of a statement list."""

    def statements(self, stmts):
        out = []
        for st in stmts:
            new = self.visit(st)
            out.extend(new if isinstance(new, list) else [new])
        return out

    def visit_For(self, node):
        bounds = [_constant(a) for a in node.iter.args]
        return [st for v in range(*bounds) for body in node.body
                for st in self.statements([_Substitute(node.target.id, v).visit(_clone(body))])]

    def visit_If(self, node):
        node.body = self.statements(node.body)
        node.orelse = self.statements(node.orelse)
        return node


class _Elements(ast.NodeTransformer):
    """``A[1, 0]`` -> the local ``A_1_0`` for the arrays of ``shapes``; a flat view's
    ``F[t]`` (``flat``: view -> (array, columns)) -> the element of its array. A value
    stored into an element becomes ``DT(value)``: the array's dtype, as the store into
    the array rounded it (float32 kernels compute some terms in float64)."""

    def __init__(self, shapes, flat):
        self.shapes, self.flat = shapes, flat
        self.locals = set()  # the element locals stored to

    def visit_Assign(self, node):
        self.generic_visit(node)
        if isinstance(node.targets[0], ast.Name) and node.targets[0].id in self.locals:
            node.value = ast.Call(ast.Name("DT", ast.Load()), [node.value], [])
        return node

    def visit_Subscript(self, node):
        self.generic_visit(node)
        name = getattr(node.value, "id", None)
        if name not in self.shapes and name not in self.flat:
            return node
        index = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        index = [i.value for i in index]
        if name in self.flat:
            name, columns = self.flat[name]
            index = divmod(index[0], columns)
        local = _local(name, index)
        if isinstance(node.ctx, ast.Store):
            self.locals.add(local)
        return ast.copy_location(ast.Name(local, node.ctx), node)


class _StoreBeforeReturn(ast.NodeTransformer):
    def __init__(self, stores):
        self.stores = stores

    def visit_Return(self, node):
        return [*(_clone(s) for s in self.stores), node]


def _local(name, index):
    return f"{name}_{'_'.join(map(str, index))}"


def _elements(shape):
    return itertools.product(*map(range, shape))


def _allocations(body):
    """The prologue's per-call arrays: {array: shape} of its ``A = np.empty(shape, DT)``
    lines and {view: (array, columns)} of its flat views ``F = A.reshape(size)``."""
    scratch, flat = {}, {}
    for st in body:
        call = st.value if isinstance(st, ast.Assign) else None
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
            continue
        name, owner = st.targets[0].id, getattr(call.func.value, "id", None)
        if owner == "np" and call.func.attr == "empty":
            shape = ast.literal_eval(call.args[0])
            scratch[name] = shape if isinstance(shape, tuple) else (shape,)
        elif owner in scratch and call.func.attr == "reshape":
            flat[name] = (owner, scratch[owner][1])
    return scratch, flat


def scalarize(source, data, state):
    """``source`` (a generated fit kernel: prologue, then ``for e in range(...)`` over
    the epochs) in scalar form. ``data``: {array: shape} read once before the epochs
    (X, Y, validation data); ``state``: {array: shape} read before the epochs and written
    back after them (parameters, optimizer slots). The prologue's per-call arrays and
    their flat views become locals; their allocations are dropped."""
    tree = ast.parse(source)
    fn = tree.body[0]
    scratch, flat = _allocations(fn.body)
    dropped = {**scratch, **flat}
    body = [st for st in fn.body
            if not (isinstance(st, ast.Assign) and getattr(st.targets[0], "id", None) in dropped)]
    at, epochs = next((i, st) for i, st in enumerate(body) if isinstance(st, ast.For))
    epochs.body = _Unroll().statements(epochs.body)
    epochs = _Elements({**data, **state, **scratch}, flat).visit(epochs)
    stores = [ast.parse(f"{name}[{', '.join(map(str, ix))}] = {_local(name, ix)}").body[0]
              for name, shape in state.items() for ix in _elements(shape)]
    epochs = _StoreBeforeReturn(stores).visit(epochs)
    loads = [ast.parse(f"{_local(name, ix)} = {name}[{', '.join(map(str, ix))}]").body[0]
             for name, shape in {**data, **state}.items() for ix in _elements(shape)]
    body[at:at + 1] = [*loads, epochs, *(_clone(s) for s in stores)]
    fn.body = body
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
