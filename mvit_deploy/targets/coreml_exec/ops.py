"""MIL ops in numpy, following the op definitions in coremltools
(``converters/mil/mil/ops/defs/iOS15..iOS18``): parameter names, defaults, padding
modes, broadcasting and axis conventions are theirs.

Every op receives float inputs as float32 (fp16 values are widened exactly) and returns
numpy arrays; the executor rounds each result to the dtype the program declares.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

OPS: dict[str, callable] = {}
VARIADIC = {"values"}  # inputs that take a list of tensors (concat)


class Unsupported(Exception):
    """An op's attribute combination the executor does not implement: the executor refuses it by name."""


def op(*names: str):
    def wrap(fn):
        for name in names:
            if name in OPS:
                raise ValueError(f"MIL op {name} implemented twice")
            OPS[name] = fn
        return fn

    return wrap


def _axes(axes, rank: int) -> tuple[int, ...] | None:
    if axes is None:
        return None
    return tuple(int(a) % rank for a in np.atleast_1d(axes))


def _bool(v, default=False) -> bool:
    return default if v is None else bool(np.asarray(v))


# ---------------------------------------------------------------------------- constants, casts


@op("const")
def const(val):
    return val


_CAST = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


@op("cast")
def cast(x, dtype):
    name = str(np.asarray(dtype).item())
    if name not in _CAST:
        raise Unsupported(f"cast to {name!r}")
    target = _CAST[name]
    if np.issubdtype(target, np.integer) and np.issubdtype(np.asarray(x).dtype, np.floating):
        x = np.trunc(x)  # MIL cast truncates floats toward zero
    return np.asarray(x).astype(target)


@op("identity")
def identity(x):
    return x


# ---------------------------------------------------------------------------- elementwise

_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "real_div": np.divide,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "floor_div": np.floor_divide,
    "mod": np.mod,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}
for _name, _fn in _BINARY.items():
    op(_name)(lambda x, y, _fn=_fn: _fn(x, y))


def _sigmoid(x):
    z = np.exp(-np.abs(x))  # never overflows; exact-ish in both tails
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


_UNARY = {
    "abs": np.abs,
    "exp": np.exp,
    "exp2": np.exp2,
    "floor": np.floor,
    "ceil": np.ceil,
    "sign": np.sign,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "tanh": np.tanh,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "atanh": np.arctanh,
    "sqrt": np.sqrt,
    "square": np.square,
    "round": np.rint,
    "logical_not": np.logical_not,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "erf": np.vectorize(math.erf, otypes=[np.float32]),
}
for _name, _fn in _UNARY.items():
    op(_name)(lambda x, _fn=_fn: _fn(x))


@op("log")
def log(x, epsilon=1e-45):
    return np.log(x + epsilon)


@op("rsqrt")
def rsqrt(x, epsilon=1e-12):
    return 1.0 / np.sqrt(x + epsilon)


@op("inverse")
def inverse(x, epsilon=1e-4):
    return 1.0 / (x + epsilon)


@op("threshold")
def threshold(x, alpha):
    return np.maximum(x, alpha)


@op("clip")
def clip(x, alpha, beta):
    return np.minimum(np.maximum(x, alpha), beta)


@op("leaky_relu")
def leaky_relu(x, alpha=0.01):
    return np.where(x >= 0, x, alpha * x)


@op("gelu")
def gelu(x, mode="EXACT"):
    mode = str(np.asarray(mode).item())
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(1.702 * x)
    return 0.5 * x * (1 + _UNARY["erf"](x / math.sqrt(2)))


@op("clamped_relu")
def clamped_relu(x, alpha, beta):
    return np.minimum(np.where(x >= 0, x, alpha * x), beta)


@op("elu")
def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


@op("linear_activation")
def linear_activation(x, alpha, beta=0.0):
    return x * alpha + beta


@op("scaled_tanh")
def scaled_tanh(x, alpha=1.0, beta=1.0):
    return alpha * np.tanh(beta * x)


@op("sigmoid_hard")
def sigmoid_hard(x, alpha=0.2, beta=0.5):
    return np.clip(alpha * x + beta, 0, 1)


@op("thresholded_relu")
def thresholded_relu(x, alpha=1.0):
    return np.where(x >= alpha, x, 0).astype(x.dtype)


@op("prelu")
def prelu(x, alpha):
    """Per-channel slope on axis 1 of [B, C, *spatial]."""
    return np.where(x > 0, x, x * _along(alpha, 1, x.ndim))


@op("softplus_parametric")
def softplus_parametric(x, alpha, beta):
    """alpha_c * log(1 + exp(beta_c * x)), channel axis 1."""
    return _along(alpha, 1, x.ndim) * np.logaddexp(0, _along(beta, 1, x.ndim) * x)


@op("softplus")
def softplus(x):
    return np.logaddexp(0, x)


@op("softmax")
def softmax(x, axis=-1):
    axis = int(axis)
    z = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


@op("select")
def select(cond, a, b):
    return np.where(cond, a, b)


# ---------------------------------------------------------------------------- linear algebra


@op("linear")
def linear(x, weight, bias=None):
    y = np.matmul(x, weight.T)
    return y if bias is None else y + bias


@op("matmul")
def matmul(x, y, transpose_x=False, transpose_y=False):
    if _bool(transpose_x) and x.ndim > 1:
        x = np.swapaxes(x, -1, -2)
    if _bool(transpose_y) and y.ndim > 1:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


def _same_padding(size: int, kernel: int, stride: int, dilation: int, lower: bool) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    small, big = total // 2, total - total // 2
    return (big, small) if lower else (small, big)


def _ints(v, n: int, default: int) -> list[int]:
    return [default] * n if v is None else [int(a) for a in np.ravel(v)]


def _pads(spatial, kernel, strides, dilations, pad_type, pad) -> list[tuple[int, int]]:
    n = len(spatial)
    pad_type = "valid" if pad_type is None else str(np.asarray(pad_type).item()).lower()
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        p = _ints(pad, 2 * n, 0)
        return [(p[2 * i], p[2 * i + 1]) for i in range(n)]
    if pad_type in ("same", "same_lower"):
        return [
            _same_padding(spatial[i], kernel[i], strides[i], dilations[i], pad_type == "same_lower") for i in range(n)
        ]
    raise Unsupported(f"pad_type {pad_type!r}")


def _taps(xp, kernel, strides, dilations, out):
    """Yield (tap index, strided view [B, C, *out]) for every kernel tap, any number of spatial dims."""
    for tap in itertools.product(*(range(k) for k in kernel)):
        index = [slice(None), slice(None)]
        for i, t in enumerate(tap):
            start = t * dilations[i]
            index.append(slice(start, start + strides[i] * (out[i] - 1) + 1, strides[i]))
        yield tap, xp[tuple(index)]


def _spatial(x, name: str) -> int:
    n = x.ndim - 2
    if not 1 <= n <= 3:
        raise Unsupported(f"{name} on a rank-{x.ndim} input (1 to 3 spatial dimensions are defined)")
    return n


@op("conv")
def conv(x, weight, bias=None, strides=None, pad_type=None, pad=None, dilations=None, groups=1):
    n = _spatial(x, "conv")
    groups = int(groups)
    kernel = weight.shape[2:]
    strides, dilations = _ints(strides, n, 1), _ints(dilations, n, 1)
    pads = _pads(x.shape[2:], kernel, strides, dilations, pad_type, pad)
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    out = [(xp.shape[2 + i] - (kernel[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(n)]
    b, cin = x.shape[:2]
    cout = weight.shape[0]
    if groups == cin and weight.shape[1] == 1 and cin > 1:  # depthwise (channel multiplier cout / cin)
        mult = cout // cin
        xr = np.repeat(xp, mult, axis=1) if mult > 1 else xp
        y = np.zeros((b, cout, *out), np.float32)
        for tap, view in _taps(xr, kernel, strides, dilations, out):
            y += view * weight[(None, slice(None), 0, *tap) + (None,) * n]
    else:
        cin_g, cout_g = cin // groups, cout // groups
        ys = []
        for g in range(groups):
            xg = xp[:, g * cin_g : (g + 1) * cin_g]
            wg = weight[g * cout_g : (g + 1) * cout_g].reshape(cout_g, -1)  # [Cout_g, Cin_g * prod(kernel)]
            if all(k == 1 for k in kernel) and all(st == 1 for st in strides):
                cols = xg.reshape(b, cin_g, -1)
            else:
                taps = [view for _, view in _taps(xg, kernel, strides, dilations, out)]
                cols = np.stack(taps, axis=2).reshape(b, cin_g * len(taps), -1)  # [B, Cin_g * taps, prod(out)]
            ys.append(np.matmul(wg, cols).reshape(b, cout_g, *out))
        y = np.concatenate(ys, axis=1) if groups > 1 else ys[0]
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * n)
    return y


@op("conv_transpose")
def conv_transpose(
    x, weight, bias=None, pad=None, output_shape=None, pad_type=None, strides=None, dilations=None, groups=1
):
    """The adjoint of conv: each input pixel scatters weight * value into a full-size output, which
    padding then crops (custom: pad[2i] before / pad[2i+1] after; same: to D_in * stride)."""
    n = _spatial(x, "conv_transpose")
    groups = int(groups)
    kernel = weight.shape[2:]
    strides, dilations = _ints(strides, n, 1), _ints(dilations, n, 1)
    b, cin = x.shape[:2]
    cin_g, cout_g = cin // groups, weight.shape[1]
    full = [(x.shape[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 for i in range(n)]
    y = np.zeros((b, cout_g * groups, *full), np.float32)
    for g in range(groups):
        xg = x[:, g * cin_g : (g + 1) * cin_g].reshape(b, cin_g, -1)  # [B, Cin_g, prod(D_in)]
        wg = weight[g * cin_g : (g + 1) * cin_g]  # [Cin_g, Cout_g, *K]
        for tap in itertools.product(*(range(k) for k in kernel)):
            contrib = np.einsum("bip,io->bop", xg, wg[(slice(None), slice(None), *tap)]).reshape(
                b, cout_g, *x.shape[2:]
            )
            index = [slice(None), slice(g * cout_g, (g + 1) * cout_g)]
            for i, t in enumerate(tap):
                start = t * dilations[i]
                index.append(slice(start, start + strides[i] * (x.shape[2 + i] - 1) + 1, strides[i]))
            y[tuple(index)] += contrib
    pad_type = "valid" if pad_type is None else str(np.asarray(pad_type).item()).lower()
    if pad_type == "custom":
        p = _ints(pad, 2 * n, 0)
        starts, sizes = [p[2 * i] for i in range(n)], [full[i] - p[2 * i] - p[2 * i + 1] for i in range(n)]
    elif pad_type == "same":  # output D_in * stride; the odd extra is cropped after
        sizes = [x.shape[2 + i] * strides[i] for i in range(n)]
        starts = [(full[i] - sizes[i]) // 2 for i in range(n)]
    elif pad_type == "valid":
        starts, sizes = [0] * n, list(full)
    else:
        raise Unsupported(f"pad_type {pad_type!r}")
    if (
        output_shape is not None
    ):  # the converter fills it in even for custom pads: the crop starts at the pad, output_shape sets the size
        sizes = [int(v) for v in np.ravel(output_shape)][-n:]
    if any(st < 0 or st + sz > full[i] for i, (st, sz) in enumerate(zip(starts, sizes, strict=False))):
        raise Unsupported(
            f"an output window {list(zip(starts, sizes, strict=False))} outside the full transposed convolution {full}"
        )
    y = y[(slice(None), slice(None), *(slice(st, st + sz) for st, sz in zip(starts, sizes, strict=False)))]
    if bias is not None:
        y = y + bias.reshape((1, -1) + (1,) * n)
    return y


def _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, fill):
    """(padded x, mask of real elements, mask of real+explicitly padded elements, output size, kernel, strides)."""
    n = _spatial(x, "pooling")
    kernel = _ints(kernel_sizes, n, 1)
    strides = _ints(strides, n, 1)
    pads = _pads(x.shape[2:], kernel, strides, [1] * n, pad_type, pad)
    out = []
    for i in range(n):
        span = x.shape[2 + i] + sum(pads[i]) - kernel[i]
        o = (-(-span // strides[i]) if _bool(ceil_mode) else span // strides[i]) + 1
        if _bool(ceil_mode) and (o - 1) * strides[i] >= x.shape[2 + i] + pads[i][0]:
            o -= 1  # a window may not start in the right padding (PyTorch's rule)
        out.append(o)
    extra = [max((out[i] - 1) * strides[i] + kernel[i] - (x.shape[2 + i] + sum(pads[i])), 0) for i in range(n)]
    widths = [(0, 0), (0, 0)] + [(pads[i][0], pads[i][1] + extra[i]) for i in range(n)]
    xp = np.pad(x, widths, constant_values=fill)
    real = np.pad(np.ones(x.shape[2:], np.float32), widths[2:])
    padded = np.pad(np.ones([x.shape[2 + i] + sum(pads[i]) for i in range(n)], np.float32), [(0, e) for e in extra])
    return xp, real[None, None], padded[None, None], out, kernel, strides


@op("max_pool")
def max_pool(x, kernel_sizes, strides=None, pad_type=None, pad=None, ceil_mode=False):
    xp, _, _, out, kernel, strides = _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, -np.inf)
    y = None
    for _, view in _taps(xp, kernel, strides, [1] * len(kernel), out):
        y = view.copy() if y is None else np.maximum(y, view)
    return y


@op("avg_pool")
def avg_pool(
    x, kernel_sizes, strides=None, pad_type=None, pad=None, exclude_padding_from_average=False, ceil_mode=False
):
    xp, real, padded, out, kernel, strides = _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, 0.0)
    counted = real if _bool(exclude_padding_from_average) else padded
    total = np.zeros(xp.shape[:2] + tuple(out), np.float32)
    count = np.zeros((1, 1, *out), np.float32)
    for _, view in _taps(xp, kernel, strides, [1] * len(kernel), out):
        total += view
    for _, view in _taps(counted, kernel, strides, [1] * len(kernel), out):
        count += view
    return total / count


@op("l2_pool")
def l2_pool(x, kernel_sizes, strides=None, pad_type=None, pad=None, ceil_mode=False):
    xp, _, _, out, kernel, strides = _pool(x, kernel_sizes, strides, pad_type, pad, ceil_mode, 0.0)
    total = np.zeros(xp.shape[:2] + tuple(out), np.float32)
    for _, view in _taps(xp, kernel, strides, [1] * len(kernel), out):
        total += view * view
    return np.sqrt(total)


@op("einsum")
def einsum(values, equation):
    """MIL's einsum is one contraction: [*B, C, H, W1] x [*B, W1, H, W2] -> [*B, C, H, W2] (rank 3 or 4),
    batch and H broadcast; any equation spelling that contraction is accepted, others are refused."""
    a, b = values
    eq = str(np.asarray(equation).item()).replace(" ", "")
    lhs, out = eq.split("->") if "->" in eq else (eq, None)
    ta, tb = lhs.split(",")
    rank = len(ta)
    if rank not in (3, 4) or len(tb) != rank or a.ndim != rank or b.ndim != rank:
        raise Unsupported(f"einsum equation {eq!r} on ranks {a.ndim} and {b.ndim}")
    lead = ta[:-3]  # the batch letter of rank 4
    c, h, w1 = ta[-3:]
    w1b, hb, w2 = tb[-3:]
    if tb[:-3] != lead or w1b != w1 or hb != h or out not in (None, lead + c + h + w2) or len(set(ta + w2)) != rank + 1:
        raise Unsupported(f"einsum equation {eq!r} (only the [*B, C, H, W1] x [*B, W1, H, W2] contraction is defined)")
    # move H next to the batch: [*B, H, C, W1] @ [*B, H, W1, W2] -> [*B, H, C, W2]
    y = np.matmul(np.swapaxes(a, -3, -2), np.swapaxes(b, -3, -2))
    return np.swapaxes(y, -3, -2)


# ---------------------------------------------------------------------------- normalization, reduction


@op("layer_norm")
def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    """gamma / beta have the shape of ``x`` along ``axes`` in ascending axis order (the MIL spec),
    whichever order ``axes`` lists them in, so they are placed on those axes, not broadcast from the right."""
    ax = _axes(axes, x.ndim) if axes is not None else tuple(range(x.ndim))
    if len(set(ax)) != len(ax):
        raise Unsupported(f"layer_norm axes {list(np.ravel(axes))} repeat an axis")
    mean = x.mean(axis=ax, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=ax, keepdims=True)
    y = (x - mean) / np.sqrt(var + float(epsilon))
    placed = [x.shape[i] if i in ax else 1 for i in range(x.ndim)]
    if gamma is not None:
        y = y * np.reshape(gamma, placed)
    if beta is not None:
        y = y + np.reshape(beta, placed)
    return y


@op("batch_norm")
def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(variance.reshape(shape) + float(epsilon))
    if gamma is not None:
        y = y * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return y


@op("instance_norm")
def instance_norm(x, gamma=None, beta=None, epsilon=1e-5):
    y = layer_norm(x, axes=tuple(range(2, x.ndim)), epsilon=epsilon)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if gamma is not None:
        y = y * gamma.reshape(shape)
    if beta is not None:
        y = y + beta.reshape(shape)
    return y


_REDUCE = {
    "reduce_mean": np.mean,
    "reduce_sum": np.sum,
    "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_prod": np.prod,
}
for _name, _fn in _REDUCE.items():
    op(_name)(
        lambda x, axes=None, keep_dims=False, _fn=_fn: _fn(x, axis=_axes(axes, x.ndim), keepdims=_bool(keep_dims))
    )


_REDUCE_NORMS = {
    "reduce_l1_norm": lambda x, ax, kd: np.sum(np.abs(x), axis=ax, keepdims=kd),
    "reduce_l2_norm": lambda x, ax, kd: np.sqrt(np.sum(np.square(x), axis=ax, keepdims=kd)),
    "reduce_sum_square": lambda x, ax, kd: np.sum(np.square(x), axis=ax, keepdims=kd),
    "reduce_log_sum": lambda x, ax, kd: np.log(np.sum(x, axis=ax, keepdims=kd)),
    "reduce_log_sum_exp": lambda x, ax, kd: _log_sum_exp(x, ax, kd),
}


def _log_sum_exp(x, ax, keep):
    m = np.max(x, axis=ax, keepdims=True)
    y = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    return y if keep else np.squeeze(y, axis=ax if ax is not None else None)


for _name, _fn in _REDUCE_NORMS.items():
    op(_name)(lambda x, axes=None, keep_dims=False, _fn=_fn: _fn(x, _axes(axes, x.ndim), _bool(keep_dims)))


def _arg(fn, x, axis, keep_dims, output_dtype):
    axis = int(axis) % x.ndim
    out = fn(x, axis=axis)
    out = np.expand_dims(out, axis) if _bool(keep_dims) else out
    return out.astype(_CAST[str(np.asarray(output_dtype).item())])


@op("reduce_argmax")
def reduce_argmax(x, axis=-1, keep_dims=False, output_dtype="int32"):
    return _arg(np.argmax, x, axis, keep_dims, output_dtype)


@op("reduce_argmin")
def reduce_argmin(x, axis=-1, keep_dims=False, output_dtype="int32"):
    return _arg(np.argmin, x, axis, keep_dims, output_dtype)


# ---------------------------------------------------------------------------- shapes


@op("reshape")
def reshape(x, shape):
    """A 0 copies the input's dimension, aligned from the right (iOS17's rule; iOS15/16 allow 0 only
    where the ranks match, where both rules agree); a 0 with no such dimension becomes 1."""
    dims = [int(s) for s in np.ravel(shape)]
    k = len(dims)
    for i, d in enumerate(dims):
        if d == 0:
            j = x.ndim - (k - i)
            dims[i] = x.shape[j] if j >= 0 else 1
    return x.reshape(dims)


@op("transpose")
def transpose(x, perm):
    return np.transpose(x, [int(p) for p in np.ravel(perm)])


@op("pixel_shuffle")
def pixel_shuffle(x, upscale_factor):
    """[n, C*f*f, H, W] -> [n, C, H*f, W*f]; channel c*f*f + i*f + j goes to pixel (H*f + i, W*f + j), as torch."""
    f = int(upscale_factor)
    n, c, h, w = x.shape
    return x.reshape(n, c // (f * f), f, f, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (f * f), h * f, w * f)


@op("pixel_unshuffle")
def pixel_unshuffle(x, downscale_factor):
    """Inverse of :func:`pixel_shuffle`: [n, C, H*f, W*f] -> [n, C*f*f, H, W]."""
    f = int(downscale_factor)
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * f * f, h // f, w // f)


@op("expand_dims")
def expand_dims(x, axes):
    out_rank = x.ndim + np.size(axes)
    for a in sorted(int(a) % out_rank for a in np.ravel(axes)):
        x = np.expand_dims(x, a)
    return x


@op("squeeze")
def squeeze(x, axes=None):
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=_axes(axes, x.ndim))


@op("concat")
def concat(values, axis, interleave=False):
    values = [np.atleast_1d(v) for v in values]  # scalars concatenate as 1-element vectors (shapes built at run time)
    axis = int(axis) % values[0].ndim
    if not _bool(interleave):
        return np.concatenate(values, axis=axis)
    # interleave: slices of each input alternate along `axis`
    stacked = np.stack(values, axis=axis + 1)  # [..., D, n, ...]
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


@op("split")
def split(x, axis, num_splits=None, split_sizes=None):
    axis = int(axis)
    if split_sizes is not None:
        cuts = np.cumsum([int(s) for s in np.ravel(split_sizes)])[:-1]
        return tuple(np.split(x, cuts, axis=axis))
    return tuple(np.split(x, int(num_splits), axis=axis))


@op("slice_by_index")
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    rank = x.ndim
    stride = np.ones(rank, int) if stride is None else np.ravel(stride)
    begin_mask = np.zeros(rank, bool) if begin_mask is None else np.ravel(begin_mask)
    end_mask = np.zeros(rank, bool) if end_mask is None else np.ravel(end_mask)
    squeeze_mask = np.zeros(rank, bool) if squeeze_mask is None else np.ravel(squeeze_mask)
    index = []
    for i in range(rank):
        b = None if begin_mask[i] else int(np.ravel(begin)[i])
        e = None if end_mask[i] else int(np.ravel(end)[i])
        if squeeze_mask[i]:
            index.append(b if b is not None else 0)
        else:
            index.append(slice(b, e, int(stride[i])))
    return x[tuple(index)]


@op("slice_by_size")
def slice_by_size(x, begin, size):
    index = []
    for b, s in zip(np.ravel(begin), np.ravel(size), strict=False):
        b, s = int(b), int(s)
        index.append(slice(b, None if s == -1 else b + s))
    return x[tuple(index)]


@op("tile")
def tile(x, reps):
    return np.tile(x, [int(r) for r in np.ravel(reps)])


@op("shape")
def shape_op(x):
    return np.array(x.shape, np.int32)


def _dcr_from_crd(x, bs: int, inverse: bool = False):
    """Channels of a block rearrangement: pixel_shuffle's order c*b*b + k (CRD) <-> TensorFlow's k*C + c (DCR)."""
    n, c, h, w = x.shape
    groups = (c // (bs * bs), bs * bs) if not inverse else (bs * bs, c // (bs * bs))
    return x.reshape(n, *groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


@op("space_to_depth")
def space_to_depth(x, block_size):
    """[n, C, H, W] -> [n, C*b*b, H/b, W/b], TensorFlow's order: channel (i*b + j)*C + c holds pixel (H*b + i, W*b +
    j)."""
    bs = int(block_size)
    return _dcr_from_crd(pixel_unshuffle(x, bs), bs)


@op("depth_to_space")
def depth_to_space(x, block_size):
    """Inverse of :func:`space_to_depth` (TensorFlow's DCR order; pixel_shuffle is the CRD order)."""
    bs = int(block_size)
    return pixel_shuffle(_dcr_from_crd(x, bs, inverse=True), bs)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


@op("pad")
def pad(x, pad, mode="constant", constant_val=0.0):
    """pad[2i], pad[2i+1] pad the i-th of the last len(pad)/2 dimensions before / after."""
    mode = str(np.asarray(mode).item())
    if mode not in _PAD_MODES:
        raise Unsupported(f"pad mode {mode!r}")
    p = [int(v) for v in np.ravel(pad)]
    if len(p) % 2 or len(p) // 2 > x.ndim:
        raise Unsupported(f"a pad of {len(p)} values for a rank-{x.ndim} tensor")
    widths = [(0, 0)] * (x.ndim - len(p) // 2) + [(p[2 * i], p[2 * i + 1]) for i in range(len(p) // 2)]
    if mode == "constant":
        return np.pad(x, widths, constant_values=np.asarray(constant_val).astype(x.dtype))
    return np.pad(x, widths, mode=_PAD_MODES[mode])


@op("stack")
def stack(values, axis):
    return np.stack(values, axis=int(axis))


@op("topk")
def topk(x, k=1, axis=-1, ascending=False, sort=True, return_indices=True, output_indices_dtype="int32"):
    """Top (or bottom) k along ``axis``; ties keep the lower index first (a stable sort). k = -1: all."""
    axis = int(axis) % x.ndim
    k = int(k)
    k = x.shape[axis] if k == -1 else k
    key = x if _bool(ascending) else -x.astype(np.float64) if x.dtype.kind == "f" else -x.astype(np.int64)
    order = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    values = np.take_along_axis(x, idx, axis=axis)
    if not _bool(return_indices, True):
        return values
    return values, idx.astype(_CAST[str(np.asarray(output_indices_dtype).item())])


def _indices(indices, size: int, what: str) -> np.ndarray:
    """Negative indices count from the end; out-of-range ones are undefined in Core ML, so refused."""
    idx = np.asarray(indices).astype(np.int64)
    if idx.size and (idx.min() < -size or idx.max() >= size):
        raise Unsupported(f"{what} index out of range [{-size}, {size}) (Core ML leaves the result undefined)")
    return np.where(idx < 0, idx + size, idx)


@op("gather")
def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    axis, bd = int(axis) % x.ndim, int(batch_dims)
    bd = bd % np.ndim(indices) if bd < 0 else bd
    idx = _indices(indices, x.shape[axis], "gather")
    if bd == 0:
        return np.take(x, idx, axis=axis)
    batch = x.shape[:bd]
    xs = x.reshape(-1, *x.shape[bd:])
    ids = idx.reshape(-1, *idx.shape[bd:])
    out = np.stack([np.take(xs[i], ids[i], axis=axis - bd) for i in range(xs.shape[0])])
    return out.reshape(*batch, *out.shape[1:])


@op("gather_along_axis")
def gather_along_axis(x, indices, axis=0, validate_indices=False):
    axis = int(axis) % x.ndim
    return np.take_along_axis(x, _indices(indices, x.shape[axis], "gather_along_axis"), axis=axis)


@op("gather_nd")
def gather_nd(x, indices, batch_dims=0, validate_indices=False):
    """indices [..., K] address the first K dimensions after ``batch_dims`` batch dimensions."""
    bd = int(batch_dims)
    idx = np.asarray(indices).astype(np.int64)
    k = idx.shape[-1]
    sizes = x.shape[bd : bd + k]
    idx = np.stack([_indices(idx[..., j], sizes[j], "gather_nd") for j in range(k)], axis=-1) if k else idx
    batch = x.shape[:bd]
    xs = x.reshape(-1, *x.shape[bd:])
    ids = idx.reshape(-1, *idx.shape[bd:])
    out = np.stack([xs[i][tuple(np.moveaxis(ids[i], -1, 0))] for i in range(xs.shape[0])])
    return out.reshape(*batch, *out.shape[1:])


# ---------------------------------------------------------------------------- classifier


@op("classify")
def classify(probabilities, classes):
    probs = np.ravel(probabilities)
    labels = [str(np.asarray(c).item()) if not isinstance(c, str) else c for c in classes]
    return labels[int(np.argmax(probs))], dict(zip(labels, probs.astype(np.float64).tolist(), strict=False))


# ---------------------------------------------------------------------------- quantization


def _along(v, axis: int, rank: int):
    """A scalar or per-axis vector broadcast against a rank-`rank` tensor along `axis`."""
    v = np.asarray(v)
    if v.ndim == 0:
        return v
    shape = [1] * rank
    shape[int(axis) % rank] = -1
    return v.reshape(shape)


@op("constexpr_affine_dequantize")
def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    rank = quantized_data.ndim
    q = quantized_data.astype(np.float32) - _along(zero_point, axis, rank).astype(np.float32)
    return q * _along(scale, axis, rank).astype(np.float32)


def _expand_blocks(v, shape):
    """Repeat a per-block tensor up to `shape` (block size = shape[i] / v.shape[i])."""
    for i, (full, blocks) in enumerate(zip(shape, v.shape, strict=False)):
        if full % blocks:
            raise ValueError(f"block dimension {blocks} does not divide {full}")
        v = np.repeat(v, full // blocks, axis=i)
    return v


@op("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(data, scale, offset=None):
    x = data.astype(np.float32)
    if offset is not None:
        x = x - _expand_blocks(offset.astype(np.float32), data.shape)
    return x * _expand_blocks(scale.astype(np.float32), data.shape)


def _unpack_lsb_first(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Indices packed little-bit-first across bytes (the iOS16 layout)."""
    bits = np.unpackbits(packed.astype(np.uint8), bitorder="little")[: nbits * count].reshape(count, nbits)
    return (bits.astype(np.int64) << np.arange(nbits)).sum(axis=1)


@op("constexpr_lut_to_dense")
def constexpr_lut_to_dense(indices, lut, shape=None, vector_axis=None):
    if shape is not None:  # iOS16: flat LUT, packed uint8 indices, explicit output shape
        shape = [int(s) for s in np.ravel(shape)]
        nbits = int(math.log2(lut.size))
        idx = _unpack_lsb_first(np.ravel(indices), nbits, int(np.prod(shape)))
        return lut.astype(np.float32)[idx].reshape(shape) if lut.dtype.kind == "f" else lut[idx].reshape(shape)
    # iOS18: per-block LUTs, lut shape = [*blocks, NUM_PALETTES, VECTOR_SIZE], indices already unpacked
    rank = indices.ndim
    vector_size = lut.shape[-1]
    block_ids = [np.arange(indices.shape[i]) // (indices.shape[i] // lut.shape[i]) for i in range(rank)]
    grids = np.meshgrid(*block_ids, indexing="ij")
    values = lut[(*grids, indices.astype(np.int64))]  # [*indices.shape, VECTOR_SIZE]
    if vector_size == 1:
        return values[..., 0]
    axis = int(vector_axis) % rank
    values = np.moveaxis(values, -1, axis + 1)  # [..., D_axis, V, ...]
    shape = list(indices.shape)
    shape[axis] *= vector_size
    return values.reshape(shape)


@op("constexpr_cast")
def constexpr_cast(source_val, output_dtype):
    return cast(source_val, output_dtype)


@op("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(nonzero_data, mask, shape=None):
    """iOS16: ``mask`` is bits packed LSB first into bytes with an explicit ``shape``; iOS18: ``mask``
    is a 0/1 tensor of the output shape. Set bits take ``nonzero_data`` in row-major order."""
    if shape is not None:
        shape = [int(v) for v in np.ravel(shape)]
        bits = (
            np.unpackbits(np.ravel(mask).astype(np.uint8), bitorder="little")[: int(np.prod(shape))]
            .astype(bool)
            .reshape(shape)
        )
    else:
        bits = np.asarray(mask).astype(bool)
    out = np.zeros(bits.shape, np.asarray(nonzero_data).dtype)
    out[bits] = np.ravel(nonzero_data)
    return out


_QDTYPE = {"int8": np.int8, "uint8": np.uint8}


@op("quantize")
def quantize(input, scale, output_dtype, zero_point=None, axis=None):
    dtype = _QDTYPE[str(np.asarray(output_dtype).item())]
    rank = input.ndim
    ax = 0 if axis is None else int(axis)
    q = np.rint(input / _along(scale, ax, rank))  # round half to even
    if zero_point is not None:
        q = q + _along(zero_point, ax, rank).astype(np.float32)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


@op("dequantize")
def dequantize(input, scale, zero_point=None, axis=None):
    rank = input.ndim
    ax = 0 if axis is None else int(axis)
    x = input.astype(np.float32)
    if zero_point is not None:
        x = x - _along(zero_point, ax, rank).astype(np.float32)
    return x * _along(scale, ax, rank).astype(np.float32)
