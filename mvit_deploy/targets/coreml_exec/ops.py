"""MIL ops in numpy, following the op definitions in coremltools
(``converters/mil/mil/ops/defs/iOS15..iOS18``): parameter names, defaults, padding
modes, broadcasting and axis conventions are theirs.

Every op receives float inputs as float32 (fp16 values are widened exactly) and returns
numpy arrays; the executor rounds each result to the dtype the program declares.
"""

from __future__ import annotations

import math

import numpy as np

OPS: dict[str, callable] = {}
VARIADIC = {"values"}  # inputs that take a list of tensors (concat)


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


_CAST = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
         "uint16": np.uint16, "int32": np.int32, "int64": np.int64, "bool": np.bool_}  # fmt: skip


@op("cast")
def cast(x, dtype):
    target = _CAST[str(np.asarray(dtype).item())]
    if np.issubdtype(target, np.integer) and np.issubdtype(np.asarray(x).dtype, np.floating):
        x = np.trunc(x)  # MIL cast truncates floats toward zero
    return np.asarray(x).astype(target)


@op("identity")
def identity(x):
    return x


# ---------------------------------------------------------------------------- elementwise

_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide, "pow": np.power,
    "maximum": np.maximum, "minimum": np.minimum, "floor_div": np.floor_divide, "mod": np.mod,
    "equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}  # fmt: skip
for _name, _fn in _BINARY.items():
    op(_name)(lambda x, y, _fn=_fn: _fn(x, y))


def _sigmoid(x):
    z = np.exp(-np.abs(x))  # never overflows; exact-ish in both tails
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


_UNARY = {
    "abs": np.abs, "exp": np.exp, "exp2": np.exp2, "floor": np.floor, "ceil": np.ceil, "sign": np.sign,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh, "sqrt": np.sqrt, "square": np.square,
    "round": np.rint, "logical_not": np.logical_not, "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6), "sigmoid": _sigmoid, "silu": lambda x: x * _sigmoid(x),
    "softsign": lambda x: x / (1 + np.abs(x)), "erf": np.vectorize(math.erf, otypes=[np.float32]),
}  # fmt: skip
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


def _pads(x_hw, k_hw, strides, dilations, pad_type, pad):
    pad_type = "valid" if pad_type is None else str(np.asarray(pad_type).item())
    if pad_type == "valid":
        return [(0, 0), (0, 0)]
    if pad_type == "custom":
        p = [int(v) for v in np.asarray(pad).ravel()] if pad is not None else [0, 0, 0, 0]
        return [(p[0], p[1]), (p[2], p[3])]
    if pad_type in ("same", "same_lower"):
        return [_same_padding(x_hw[i], k_hw[i], strides[i], dilations[i], pad_type == "same_lower") for i in range(2)]
    raise ValueError(f"conv pad_type {pad_type!r} is not supported")


def _windows(xp, k_hw, strides, dilations, out_hw):
    """Yield (kh, kw, view [B, C, Ho, Wo]) for each kernel tap."""
    for kh in range(k_hw[0]):
        for kw in range(k_hw[1]):
            h0, w0 = kh * dilations[0], kw * dilations[1]
            yield kh, kw, xp[:, :, h0 : h0 + strides[0] * (out_hw[0] - 1) + 1 : strides[0], w0 : w0 + strides[1] * (out_hw[1] - 1) + 1 : strides[1]]


@op("conv")
def conv(x, weight, bias=None, strides=None, pad_type=None, pad=None, dilations=None, groups=1):
    if x.ndim != 4:
        raise ValueError(f"conv on rank-{x.ndim} input: only 2-D convolutions are implemented")
    groups = int(groups)
    k_hw = weight.shape[2:]
    strides = [1, 1] if strides is None else [int(s) for s in np.ravel(strides)]
    dilations = [1, 1] if dilations is None else [int(d) for d in np.ravel(dilations)]
    pads = _pads(x.shape[2:], k_hw, strides, dilations, pad_type, pad)
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    out_hw = [(xp.shape[2 + i] - (k_hw[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(2)]
    b, cin = x.shape[:2]
    cout = weight.shape[0]
    if groups == cin and weight.shape[1] == 1:  # depthwise (channel multiplier cout / cin)
        mult = cout // cin
        xr = np.repeat(xp, mult, axis=1) if mult > 1 else xp
        out = np.zeros((b, cout, *out_hw), np.float32)
        for kh, kw, view in _windows(xr, k_hw, strides, dilations, out_hw):
            out += view * weight[None, :, 0, kh, kw, None, None]
    else:
        cin_g, cout_g = cin // groups, cout // groups
        outs = []
        for g in range(groups):
            xg = xp[:, g * cin_g : (g + 1) * cin_g]
            wg = weight[g * cout_g : (g + 1) * cout_g].reshape(cout_g, -1)  # [Cout_g, Cin_g*kh*kw]
            if k_hw == (1, 1) and strides == [1, 1]:
                cols = xg.reshape(b, cin_g, -1)
            else:
                taps = [view for _, _, view in _windows(xg, k_hw, strides, dilations, out_hw)]
                cols = np.stack(taps, axis=2).reshape(b, cin_g * len(taps), -1)  # [B, Cin_g*k*k, Ho*Wo]
            outs.append(np.matmul(wg, cols).reshape(b, cout_g, *out_hw))
        out = np.concatenate(outs, axis=1) if groups > 1 else outs[0]
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


# ---------------------------------------------------------------------------- normalization, reduction


@op("layer_norm")
def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    ax = _axes(axes, x.ndim) if axes is not None else tuple(range(x.ndim))
    mean = x.mean(axis=ax, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=ax, keepdims=True)
    y = (x - mean) / np.sqrt(var + float(epsilon))
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
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


_REDUCE = {"reduce_mean": np.mean, "reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min, "reduce_prod": np.prod}
for _name, _fn in _REDUCE.items():
    op(_name)(lambda x, axes=None, keep_dims=False, _fn=_fn: _fn(x, axis=_axes(axes, x.ndim), keepdims=_bool(keep_dims)))


@op("reduce_argmax")
def reduce_argmax(x, axis=-1, keep_dims=False):
    out = np.argmax(x, axis=int(axis))
    return np.expand_dims(out, int(axis)).astype(np.int32) if _bool(keep_dims) else out.astype(np.int32)


# ---------------------------------------------------------------------------- shapes


@op("reshape")
def reshape(x, shape):
    return x.reshape([int(s) for s in np.ravel(shape)])


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
    for i, (b, s) in enumerate(zip(np.ravel(begin), np.ravel(size))):
        b, s = int(b), int(s)
        index.append(slice(b, None if s == -1 else b + s))
    return x[tuple(index)]


@op("tile")
def tile(x, reps):
    return np.tile(x, [int(r) for r in np.ravel(reps)])


@op("shape")
def shape_op(x):
    return np.array(x.shape, np.int32)


@op("gather")
def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    return np.take(x, np.asarray(indices).astype(np.int64), axis=int(axis))


# ---------------------------------------------------------------------------- classifier


@op("classify")
def classify(probabilities, classes):
    probs = np.ravel(probabilities)
    labels = [str(np.asarray(c).item()) if not isinstance(c, str) else c for c in classes]
    return labels[int(np.argmax(probs))], dict(zip(labels, probs.astype(np.float64).tolist()))


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
    for i, (full, blocks) in enumerate(zip(shape, v.shape)):
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
