"""Each MIL op of the reference executor against an independent torch / numpy computation.

Programs are built with coremltools' MIL builder, saved as real .mlpackage files with an
empty pass pipeline (so the op under test survives as written), and run by our executor.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ct = pytest.importorskip(
    "coremltools", reason="coremltools (the lock's [coreml] extra) reads and converts .mlpackage files"
)
from coremltools.converters.mil import Builder as mb  # noqa: E402

from mvit_deploy.targets.coreml_exec import MILExecutor, UnsupportedOpError  # noqa: E402
from mvit_deploy.targets.coreml_exec.ops import OPS  # noqa: E402

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def run(tmp_path, build, inputs: dict[str, np.ndarray], opset=ct.target.iOS17, fp16=False):
    """Build a one-function program from ``build(**input vars)``, save, execute, return outputs."""
    specs = [mb.TensorSpec(shape=v.shape, dtype=ct.converters.mil.mil.types.fp32) for v in inputs.values()]

    keys = list(inputs)
    if len(keys) == 1:

        def fn(a):
            return build(**{keys[0]: a})

    else:

        def fn(a, b):
            return build(**{keys[0]: a, keys[1]: b})

    prog = mb.program(input_specs=specs, opset_version=opset)(fn)

    precision = ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32
    model = ct.convert(
        prog,
        convert_to="mlprogram",
        pass_pipeline=ct.PassPipeline.EMPTY if not fp16 else ct.PassPipeline.DEFAULT,
        minimum_deployment_target=opset,
        compute_precision=precision,
    )
    path = tmp_path / f"p{len(list(tmp_path.iterdir()))}.mlpackage"
    model.save(str(path))
    ex = MILExecutor(path)
    names = [p.name for p in prog.functions["main"].inputs.values()]
    outputs, _ = ex.run(dict(zip(names, inputs.values(), strict=False)))
    values = [outputs[n] for n in ex.program.outputs]
    return values[0] if len(values) == 1 else values


def close(got, expected, atol=1e-5):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(expected, np.float64), atol=atol, rtol=1e-5)


T = torch.from_numpy


# ---------------------------------------------------------------------------- conv


def test_conv_custom_pad_stride2_bias(tmp_path):
    x, w, b = rand(2, 3, 9, 10), rand(5, 3, 3, 3), rand(5)
    got = run(
        tmp_path,
        lambda x: mb.conv(x=x, weight=w, bias=b, strides=[2, 2], pad_type="custom", pad=[1, 0, 2, 1]),
        {"x": x},
    )
    close(got, F.conv2d(F.pad(T(x), (2, 1, 1, 0)), T(w), T(b), stride=2), 1e-4)


def test_conv_same_dilated_grouped(tmp_path):
    x, w = rand(1, 4, 8, 8), rand(6, 2, 3, 3)
    got = run(tmp_path, lambda x: mb.conv(x=x, weight=w, pad_type="same", dilations=[2, 2], groups=2), {"x": x})
    close(got, F.conv2d(T(x), T(w), padding="same", dilation=2, groups=2), 1e-4)


@pytest.mark.parametrize("pad_type, left_extra", [("same", False), ("same_lower", True)])
def test_conv_same_even_kernel_puts_extra_pad_per_mode(tmp_path, pad_type, left_extra):
    x, w = rand(1, 2, 7, 7), rand(3, 2, 4, 4)
    got = run(tmp_path, lambda x: mb.conv(x=x, weight=w, pad_type=pad_type), {"x": x})
    pads = (2, 1, 2, 1) if left_extra else (1, 2, 1, 2)  # total 3: same puts the extra after, same_lower before
    close(got, F.conv2d(F.pad(T(x), pads), T(w)), 1e-4)


def test_conv_same_stride2(tmp_path):
    x, w = rand(1, 3, 9, 9), rand(4, 3, 3, 3)
    got = run(tmp_path, lambda x: mb.conv(x=x, weight=w, strides=[2, 2], pad_type="same"), {"x": x})
    # out = ceil(9/2) = 5, total pad = (5-1)*2 + 3 - 9 = 2 -> (1, 1)
    close(got, F.conv2d(T(x), T(w), stride=2, padding=1), 1e-4)


def test_conv_depthwise_with_multiplier(tmp_path):
    x, w, b = rand(2, 4, 6, 6), rand(8, 1, 3, 3), rand(8)
    got = run(
        tmp_path, lambda x: mb.conv(x=x, weight=w, bias=b, pad_type="custom", pad=[1, 1, 1, 1], groups=4), {"x": x}
    )
    close(got, F.conv2d(T(x), T(w), T(b), padding=1, groups=4), 1e-4)


# ---------------------------------------------------------------------------- linear algebra


def test_linear_with_and_without_bias(tmp_path):
    x, w, b = rand(2, 5, 8), rand(3, 8), rand(3)
    close(run(tmp_path, lambda x: mb.linear(x=x, weight=w, bias=b), {"x": x}), F.linear(T(x), T(w), T(b)), 1e-5)
    close(run(tmp_path, lambda x: mb.linear(x=x, weight=w), {"x": x}), F.linear(T(x), T(w)), 1e-5)


@pytest.mark.parametrize("tx, ty", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_transposes_and_broadcast(tmp_path, tx, ty):
    a = rand(2, 3, 4, 5) if not tx else rand(2, 3, 5, 4)
    b = rand(5, 6) if not ty else rand(6, 5)
    got = run(tmp_path, lambda a, b: mb.matmul(x=a, y=b, transpose_x=tx, transpose_y=ty), {"a": a, "b": b})
    ta, tb = T(a), T(b)
    close(got, torch.matmul(ta.transpose(-1, -2) if tx else ta, tb.T if ty else tb), 1e-5)


# ---------------------------------------------------------------------------- elementwise and activations


@pytest.mark.parametrize(
    "name, fn",
    [
        ("add", torch.add),
        ("sub", torch.sub),
        ("mul", torch.mul),
        ("real_div", torch.div),
        ("maximum", torch.maximum),
        ("minimum", torch.minimum),
    ],
)
def test_binary_broadcast(tmp_path, name, fn):
    x, y = rand(2, 3, 4), rand(3, 1) + 3.0
    close(run(tmp_path, lambda x, y: getattr(mb, name)(x=x, y=y), {"x": x, "y": y}), fn(T(x), T(y)))


@pytest.mark.parametrize(
    "name, kwargs, ref",
    [
        ("silu", {}, F.silu),
        ("sigmoid", {}, torch.sigmoid),
        ("relu", {}, torch.relu),
        ("tanh", {}, torch.tanh),
        ("exp", {}, torch.exp),
        ("gelu", {"mode": "EXACT"}, F.gelu),
        ("gelu", {"mode": "TANH_APPROXIMATION"}, lambda t: F.gelu(t, approximate="tanh")),
        ("leaky_relu", {"alpha": 0.2}, lambda t: F.leaky_relu(t, 0.2)),
        ("clip", {"alpha": -0.5, "beta": 0.7}, lambda t: t.clamp(-0.5, 0.7)),
        ("rsqrt", {"epsilon": 0.5}, lambda t: torch.rsqrt(t.abs() + 0.5)),
    ],
)
def test_unary(tmp_path, name, kwargs, ref):
    x = rand(3, 17) * 3
    if name == "rsqrt":
        x = np.abs(x)
    close(run(tmp_path, lambda x: getattr(mb, name)(x=x, **kwargs), {"x": x}), ref(T(x)), 2e-5)


@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax_axis(tmp_path, axis):
    x = rand(2, 5, 7) * 4
    close(run(tmp_path, lambda x: mb.softmax(x=x, axis=axis), {"x": x}), torch.softmax(T(x), axis), 1e-6)


# ---------------------------------------------------------------------------- normalization, reductions


def test_layer_norm_last_axis_with_affine(tmp_path):
    x, g, b = rand(2, 6, 8), rand(8), rand(8)
    got = run(tmp_path, lambda x: mb.layer_norm(x=x, axes=[-1], gamma=g, beta=b, epsilon=1e-3), {"x": x})
    close(got, F.layer_norm(T(x), (8,), T(g), T(b), eps=1e-3), 1e-5)


def test_layer_norm_two_axes_no_affine(tmp_path):
    x = rand(3, 4, 5)
    close(run(tmp_path, lambda x: mb.layer_norm(x=x, axes=[1, 2]), {"x": x}), F.layer_norm(T(x), (4, 5)), 1e-5)


@pytest.mark.parametrize("axes", [[0, 2], [2, 0], [1], [0, 1, 3], [-3, -1]])
def test_layer_norm_non_trailing_axes_with_affine(tmp_path, axes):
    """gamma / beta have x's shape along the (sorted) axes; torch normalises trailing dims, so move the axes there."""
    x = rand(3, 4, 5, 6) * 4 + 2
    rank = x.ndim
    ax = sorted(a % rank for a in axes)
    shape = tuple(x.shape[a] for a in ax)
    g, b = rand(*shape), rand(*shape)
    got = run(tmp_path, lambda x: mb.layer_norm(x=x, axes=axes, gamma=g, beta=b, epsilon=1e-4), {"x": x})
    rest = [a for a in range(rank) if a not in ax]
    moved = T(x).permute(*rest, *ax)
    ref = F.layer_norm(moved, shape, T(g), T(b), eps=1e-4).permute(*np.argsort(rest + ax).tolist())
    close(got, ref, 2e-5)


def test_batch_norm(tmp_path):
    x, m, v, g, b = rand(2, 3, 4, 4), rand(3), np.abs(rand(3)) + 0.1, rand(3), rand(3)
    got = run(tmp_path, lambda x: mb.batch_norm(x=x, mean=m, variance=v, gamma=g, beta=b, epsilon=1e-3), {"x": x})
    close(got, F.batch_norm(T(x), T(m), T(v), T(g), T(b), training=False, eps=1e-3), 1e-5)


@pytest.mark.parametrize(
    "name, ref", [("reduce_mean", torch.mean), ("reduce_sum", torch.sum), ("reduce_max", torch.amax)]
)
@pytest.mark.parametrize("keep", [False, True])
def test_reductions(tmp_path, name, ref, keep):
    x = rand(2, 3, 4, 5)
    got = run(tmp_path, lambda x: getattr(mb, name)(x=x, axes=[2, -1], keep_dims=keep), {"x": x})
    close(got, ref(T(x), dim=(2, 3), keepdim=keep), 1e-5)


# ---------------------------------------------------------------------------- shapes


def test_reshape_transpose_expand_squeeze(tmp_path):
    x = rand(2, 3, 4)
    close(run(tmp_path, lambda x: mb.reshape(x=x, shape=[4, -1]), {"x": x}), T(x).reshape(4, -1))
    close(run(tmp_path, lambda x: mb.transpose(x=x, perm=[2, 0, 1]), {"x": x}), T(x).permute(2, 0, 1))
    close(run(tmp_path, lambda x: mb.expand_dims(x=x, axes=[0, -1]), {"x": x}), T(x)[None, ..., None])
    y = rand(1, 3, 1, 4)
    close(run(tmp_path, lambda y: mb.squeeze(x=y, axes=[2]), {"y": y}), T(y).squeeze(2))


def test_pixel_shuffle_and_unshuffle_match_torch(tmp_path):
    """MobileViT's unfold/fold: channel c*f*f + i*f + j <-> pixel (f*h + i, f*w + j), as PyTorch defines it."""
    x = rand(2, 12, 3, 5)
    close(run(tmp_path, lambda x: mb.pixel_shuffle(x=x, upscale_factor=2), {"x": x}), F.pixel_shuffle(T(x), 2))
    y = rand(1, 3, 6, 10)
    close(
        run(
            tmp_path, lambda y: mb.pixel_unshuffle(x=y, downscale_factor=np.uint32(2)), {"y": y}, opset=ct.target.iOS16
        ),
        F.pixel_unshuffle(T(y), 2),
    )


@pytest.mark.parametrize("interleave", [False, True])
def test_concat(tmp_path, interleave):
    a, b = rand(2, 3, 4), rand(2, 3, 4)
    got = run(tmp_path, lambda a, b: mb.concat(values=[a, b], axis=1, interleave=interleave), {"a": a, "b": b})
    expected = torch.stack([T(a), T(b)], dim=2).flatten(1, 2) if interleave else torch.cat([T(a), T(b)], 1)
    close(got, expected)


def test_split_by_count_and_sizes(tmp_path):
    x = rand(2, 6, 3)
    got = run(tmp_path, lambda x: mb.split(x=x, num_splits=3, axis=1), {"x": x})
    for g, e in zip(got, torch.split(T(x), 2, dim=1), strict=False):
        close(g, e)
    got = run(tmp_path, lambda x: mb.split(x=x, split_sizes=[1, 5], axis=-2), {"x": x})
    for g, e in zip(got, torch.split(T(x), [1, 5], dim=1), strict=False):
        close(g, e)


def test_slice_by_index_masks_and_stride(tmp_path):
    x = rand(3, 8, 9)
    build = lambda x: mb.slice_by_index(  # noqa: E731
        x=x,
        begin=[1, 1, 2],
        end=[0, 7, 0],
        stride=[1, 2, 3],
        begin_mask=[False, False, True],
        end_mask=[True, False, True],
        squeeze_mask=[False, False, False],
    )
    close(run(tmp_path, build, {"x": x}), T(x)[1:, 1:7:2, ::3])
    squeeze = lambda x: mb.slice_by_index(x=x, begin=[2, 0, 0], end=[3, 8, 9], squeeze_mask=[True, False, False])  # noqa: E731
    close(run(tmp_path, squeeze, {"x": x}), T(x)[2])


def test_cast_truncates_toward_zero(tmp_path):
    x = np.array([[-2.7, -0.5, 0.5, 2.7]], np.float32)
    got = run(tmp_path, lambda x: mb.cast(x=x, dtype="int32"), {"x": x})
    assert got.dtype == np.int32 and got.tolist() == T(x).to(torch.int32).tolist()


# ---------------------------------------------------------------------------- classify, fp16


def test_classify_returns_label_and_dict(tmp_path):
    """classify is only emitted by the converter's classifier path, so convert a real (tiny) classifier."""
    lin = torch.nn.Linear(4, 3).eval()
    x = torch.randn(1, 4)
    program = torch.export.export(lin, (x,)).run_decompositions({})
    model = ct.convert(
        program,
        inputs=[ct.TensorType(name="x", shape=(1, 4))],
        convert_to="mlprogram",
        classifier_config=ct.ClassifierConfig(["cat", "dog", "owl"]),
        compute_precision=ct.precision.FLOAT32,
    )
    model.save(str(tmp_path / "cls.mlpackage"))
    ex = MILExecutor(tmp_path / "cls.mlpackage")
    assert "classify" in {o.type for o in ex.program.operations}
    outputs, _ = ex.run({"x": x.numpy()})
    label_name, probs_name = ex.program.outputs
    with torch.no_grad():
        logits = lin(x)[0]
    assert outputs[label_name] == ["cat", "dog", "owl"][int(logits.argmax())]
    assert list(outputs[probs_name]) == ["cat", "dog", "owl"]
    close(list(outputs[probs_name].values()), logits, 1e-5)


def test_fp16_program_rounds_each_op_result(tmp_path):
    x = rand(4, 33) * 5
    got = run(tmp_path, lambda x: mb.silu(x=mb.mul(x=x, y=np.float32(1.37))), {"x": x}, fp16=True)
    # fp16 emulation: input cast to fp16, each op's result rounded to fp16
    h = T(x).half().float()
    expected = F.silu((h * torch.tensor(1.37).half().float()).half().float()).half().float()
    assert got.dtype == np.float32  # the program casts back to fp32 at its output
    # within one fp16 ulp (relative 2**-10; absolute 2**-24 for subnormals)
    np.testing.assert_allclose(np.asarray(got, np.float32), expected.numpy(), rtol=2**-10, atol=2**-24)


# ---------------------------------------------------------------------------- quantization


def test_constexpr_affine_dequantize_per_channel(tmp_path):
    q = RNG.integers(-128, 127, (4, 3, 2, 2)).astype(np.int8)
    scale, zp = (np.abs(rand(4)) + 0.01), RNG.integers(-3, 3, 4).astype(np.int8)
    w = lambda: mb.constexpr_affine_dequantize(quantized_data=q, zero_point=zp, scale=scale, axis=0)  # noqa: E731
    x = rand(1, 3, 5, 5)
    got = run(tmp_path, lambda x: mb.conv(x=x, weight=w()), {"x": x}, opset=ct.target.iOS16)
    w_ref = (T(q).float() - T(zp).float()[:, None, None, None]) * T(scale)[:, None, None, None]
    close(got, F.conv2d(T(x), w_ref), 1e-4)


def test_constexpr_blockwise_shift_scale(tmp_path):
    data = RNG.integers(-8, 7, (6, 4)).astype(np.int8)
    scale, offset = np.abs(rand(3, 2)) + 0.1, RNG.integers(-2, 2, (3, 2)).astype(np.int8)
    x = rand(2, 4)
    w = lambda: mb.constexpr_blockwise_shift_scale(data=data, scale=scale, offset=offset)  # noqa: E731
    got = run(tmp_path, lambda x: mb.linear(x=x, weight=w()), {"x": x}, opset=ct.target.iOS18)
    rep = lambda t: t.repeat_interleave(2, 0).repeat_interleave(2, 1)  # noqa: E731  blocks of 2 x 2
    w_ref = (T(data).float() - rep(T(offset).float())) * rep(T(scale))
    close(got, T(x) @ w_ref.T, 1e-5)


def pack_lsb_first(indices: list[int], nbits: int) -> np.ndarray:
    """Independent packer for the iOS16 LUT layout: bit j of index i lands at bit i*nbits+j of the stream."""
    stream = 0
    for i, v in enumerate(indices):
        stream |= v << (i * nbits)
    n = (len(indices) * nbits + 7) // 8
    return np.array([(stream >> (8 * k)) & 0xFF for k in range(n)], np.uint8)


def test_constexpr_lut_to_dense_ios16_2bit(tmp_path):
    shape = (3, 5)
    idx = RNG.integers(0, 4, int(np.prod(shape))).tolist()
    lut = np.array([-1.5, 0.25, 2.0, 7.0], np.float32)
    w = lambda: mb.constexpr_lut_to_dense(indices=pack_lsb_first(idx, 2), lut=lut, shape=np.array(shape, np.uint32))  # noqa: E731
    x = rand(2, 5)
    got = run(tmp_path, lambda x: mb.linear(x=x, weight=w()), {"x": x}, opset=ct.target.iOS16)
    close(got, T(x) @ T(lut[np.array(idx)].reshape(shape)).T, 1e-5)


def test_quantize_dequantize_per_channel(tmp_path):
    x = rand(2, 3, 4) * 3
    scale, zp = np.array([0.05, 0.1, 0.02], np.float32), np.array([3, -2, 0], np.int8)
    got = run(
        tmp_path, lambda x: mb.quantize(input=x, scale=scale, zero_point=zp, axis=1, output_dtype="int8"), {"x": x}
    )
    ref = torch.quantize_per_channel(T(x), T(scale).double(), T(zp).long(), axis=1, dtype=torch.qint8)
    np.testing.assert_array_equal(got, ref.int_repr().numpy())
    deq = run(
        tmp_path,
        lambda x: mb.dequantize(
            input=mb.quantize(input=x, scale=scale, zero_point=zp, axis=1, output_dtype="int8"),
            scale=scale,
            zero_point=zp,
            axis=1,
        ),
        {"x": x},
    )
    close(deq, ref.dequantize(), 1e-6)


# ---------------------------------------------------------------------------- layout, padding, pooling, gathers


def onnx_op(op_type: str, x: np.ndarray, **attrs) -> np.ndarray:
    """One ONNX node run by onnxruntime: an implementation independent of ours and of coremltools."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node(op_type, ["x"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_depth_to_space_and_space_to_depth_follow_tensorflow_order(tmp_path):
    """Core ML's pair is TensorFlow's (ONNX mode DCR), unlike pixel_shuffle (CRD): C > 1 tells them apart."""
    x = rand(1, 12, 3, 4)
    close(
        run(tmp_path, lambda x: mb.depth_to_space(x=x, block_size=2), {"x": x}),
        onnx_op("DepthToSpace", x, blocksize=2, mode="DCR"),
        0,
    )
    y = rand(2, 3, 6, 4)
    close(
        run(tmp_path, lambda x: mb.space_to_depth(x=x, block_size=2), {"x": y}),
        onnx_op("SpaceToDepth", y, blocksize=2),
        0,
    )


@pytest.mark.parametrize(
    "mode, torch_mode", [("constant", "constant"), ("reflect", "reflect"), ("replicate", "replicate")]
)
def test_pad_modes(tmp_path, mode, torch_mode):
    x = rand(2, 3, 5, 6)
    kw = dict(constant_val=np.float32(1.5)) if mode == "constant" else {}
    got = run(tmp_path, lambda x: mb.pad(x=x, pad=np.array([1, 2, 3, 0], np.int32), mode=mode, **kw), {"x": x})
    ref = F.pad(T(x), (3, 0, 1, 2), mode=torch_mode, **({"value": 1.5} if mode == "constant" else {}))
    close(got, ref, 0)


def test_stack_and_einsum(tmp_path):
    a, b = rand(2, 3, 4, 5), rand(2, 5, 4, 6)
    got = run(tmp_path, lambda a, b: mb.einsum(values=(a, b), equation="nchw,nwhu->nchu"), {"a": a, "b": b})
    close(got, torch.einsum("nchw,nwhu->nchu", T(a), T(b)), 1e-4)
    got = run(tmp_path, lambda a, b: mb.stack(values=[a, mb.mul(x=b, y=2.0)], axis=1), {"a": a, "b": a})
    close(got, torch.stack([T(a), T(a) * 2], 1), 0)


@pytest.mark.parametrize("ascending", [False, True])
def test_topk_values_and_indices(tmp_path, ascending):
    x = RNG.permutation(60).reshape(3, 4, 5).astype(np.float32)  # distinct values: indices are unambiguous
    values, indices = run(tmp_path, lambda x: mb.topk(x=x, k=3, axis=1, ascending=ascending), {"x": x})
    ref = torch.topk(T(x), 3, dim=1, largest=not ascending)
    close(values, ref.values, 0)
    np.testing.assert_array_equal(indices, ref.indices.numpy())


def test_max_and_avg_pool_ceil_mode_and_padding(tmp_path):
    x = rand(1, 2, 7, 8)
    got = run(
        tmp_path,
        lambda x: mb.max_pool(
            x=x, kernel_sizes=[3, 3], strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1], ceil_mode=True
        ),
        {"x": x},
    )
    close(got, F.max_pool2d(T(x), 3, 2, padding=1, ceil_mode=True), 0)
    for exclude in (False, True):
        got = run(
            tmp_path,
            lambda x: mb.avg_pool(
                x=x,
                kernel_sizes=[3, 3],
                strides=[2, 2],
                pad_type="custom",
                pad=[1, 1, 1, 1],
                exclude_padding_from_average=exclude,  # noqa: B023 (run() calls it in this iteration)
                ceil_mode=True,
            ),
            {"x": x},
        )
        close(got, F.avg_pool2d(T(x), 3, 2, padding=1, ceil_mode=True, count_include_pad=not exclude), 1e-6)


def test_fp16_weights_in_fp32_program_round_once_from_the_stored_values(tmp_path):
    """The op suite's 'fp16-data' cases: fp16 input and weights, fp16 output. Our output must equal the exact
    (float64) convolution of the values the program holds, rounded once to fp16 — bit for bit."""
    from coremltools.converters.mil.mil import types

    w, b = rand(4, 1, 2, 2).astype(np.float16), rand(4).astype(np.float16)
    x = RNG.random((1, 2, 5, 5)).astype(np.float16)
    prog = mb.program(input_specs=[mb.TensorSpec(shape=x.shape, dtype=types.fp16)], opset_version=ct.target.iOS17)(
        lambda x: mb.conv(x=x, weight=w, bias=b, pad=[2, 2, 2, 2], pad_type="custom", strides=[2, 1], groups=2)
    )
    model = ct.convert(
        prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17, compute_precision=ct.precision.FLOAT32
    )
    model.save(str(tmp_path / "h.mlpackage"))
    ex = MILExecutor(tmp_path / "h.mlpackage")
    got = ex.run({ex.input_names[0]: x})[0][ex.program.outputs[0]]
    exact = F.conv2d(
        T(x.astype(np.float64)), T(w.astype(np.float64)), T(b.astype(np.float64)), stride=(2, 1), padding=2, groups=2
    )
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, exact.numpy().astype(np.float16))


def test_conv_1d_3d_and_transpose(tmp_path):
    x1, w1 = rand(2, 3, 11), rand(4, 3, 3)
    close(
        run(tmp_path, lambda x: mb.conv(x=x, weight=w1, strides=[2], pad_type="same"), {"x": x1}),
        F.conv1d(F.pad(T(x1), (1, 1)), T(w1), stride=2),
        1e-4,
    )
    x3, w3 = rand(1, 2, 4, 5, 6), rand(3, 2, 2, 3, 3)
    close(
        run(tmp_path, lambda x: mb.conv(x=x, weight=w3, dilations=[1, 1, 2]), {"x": x3}),
        F.conv3d(T(x3), T(w3), dilation=(1, 1, 2)),
        1e-4,
    )
    x, _, b = rand(1, 4, 5, 6), rand(4, 3, 3, 3), rand(6)  # the unused draw keeps the random sequence
    w2 = rand(4, 3, 3, 3)
    got = run(
        tmp_path,
        lambda x: mb.conv_transpose(x=x, weight=w2, strides=[2, 2], pad_type="custom", pad=[1, 1, 1, 1]),
        {"x": x},
    )
    close(got, F.conv_transpose2d(T(x), T(w2), stride=2, padding=1), 1e-4)
    got = run(tmp_path, lambda x: mb.conv_transpose(x=x, weight=w2, bias=b[:3], groups=1, dilations=[2, 1]), {"x": x})
    close(got, F.conv_transpose2d(T(x), T(w2), T(b[:3]), dilation=(2, 1)), 1e-4)


def test_gathers_against_numpy_indexing(tmp_path):
    x = rand(3, 4, 5)
    idx = np.array([[2, -1], [0, 3]], np.int32)
    close(run(tmp_path, lambda x: mb.gather(x=x, indices=idx, axis=1), {"x": x}), x[:, [[2, 3], [0, 3]]], 0)
    along = RNG.integers(0, 4, (3, 2, 5)).astype(np.int32)
    close(
        run(tmp_path, lambda x: mb.gather_along_axis(x=x, indices=along, axis=1), {"x": x}),
        np.take_along_axis(x, along.astype(np.int64), 1),
        0,
    )
    nd = np.array([[0, 1], [2, 3]], np.int32)
    close(run(tmp_path, lambda x: mb.gather_nd(x=x, indices=nd), {"x": x}), x[[0, 2], [1, 3]], 0)
    batched = np.array([[1, 0], [3, 3], [2, 1]], np.int32)  # batch_dims=1: row i gathers along axis 1 with batched[i]
    got = run(
        tmp_path, lambda x: mb.gather(x=x, indices=batched, axis=1, batch_dims=1), {"x": x}, opset=ct.target.iOS16
    )
    close(got, np.stack([x[i][batched[i]] for i in range(3)]), 0)


def test_out_of_range_gather_is_refused_not_guessed(tmp_path):
    x = rand(3, 4)
    with pytest.raises(UnsupportedOpError, match=r"'gather' .*index out of range \[-4, 4\)"):
        run(tmp_path, lambda x: mb.gather(x=x, indices=np.array([1, 4], np.int32), axis=1), {"x": x})


# ---------------------------------------------------------------------------- flexible inputs


def flexible_program(tmp_path, shape):
    from coremltools.converters.mil.mil import get_new_symbol

    prog = mb.program(input_specs=[mb.TensorSpec(shape=(1, get_new_symbol(), 4))], opset_version=ct.target.iOS17)(
        lambda x: mb.layer_norm(x=x, axes=[1], epsilon=1e-5)
    )
    model = ct.convert(
        prog,
        convert_to="mlprogram",
        inputs=[ct.TensorType(name="x", shape=shape)],
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32,
    )
    path = tmp_path / f"flex{len(list(tmp_path.iterdir()))}.mlpackage"
    model.save(str(path))
    return MILExecutor(path)


def test_range_dim_takes_the_actual_shape_and_refuses_outside_the_range(tmp_path):
    from mvit_deploy.targets.coreml_exec import InputShapeError

    ex = flexible_program(tmp_path, (1, ct.RangeDim(2, 9), 4))
    for n in (2, 7):
        x = rand(1, n, 4)
        close(
            ex.run({"x": x})[0][ex.program.outputs[0]], F.layer_norm(T(x).transpose(1, 2), (n,)).transpose(1, 2), 1e-5
        )
    with pytest.raises(InputShapeError, match=r"dimension 1 = 10 is outside the declared range \[2, 9\]"):
        ex.run({"x": rand(1, 10, 4)})
    with pytest.raises(InputShapeError, match="has rank 2"):
        ex.run({"x": rand(5, 4)})


def test_enumerated_shapes_accept_only_the_set(tmp_path):
    from mvit_deploy.targets.coreml_exec import InputShapeError

    ex = flexible_program(tmp_path, ct.EnumeratedShapes(shapes=[(1, 3, 4), (1, 6, 4)]))
    x = rand(1, 6, 4)
    close(ex.run({"x": x})[0][ex.program.outputs[0]], F.layer_norm(T(x).transpose(1, 2), (6,)).transpose(1, 2), 1e-5)
    with pytest.raises(InputShapeError, match=r"accepts only the enumerated shapes \[\(1, 3, 4\), \(1, 6, 4\)\]"):
        ex.run({"x": rand(1, 5, 4)})


# ---------------------------------------------------------------------------- errors and coverage


def test_unknown_parameter_is_refused_by_name(tmp_path, monkeypatch):
    """An op whose program passes a parameter the executor's function does not take is refused, never half-run."""
    import mvit_deploy.targets.coreml_exec as executor

    monkeypatch.setitem(executor.OPS, "softmax", lambda x: x)  # an implementation that knows no 'axis'
    x = rand(2, 5)
    with pytest.raises(UnsupportedOpError, match=r"'softmax' .*parameter\(s\) \['axis'\]"):
        run(tmp_path, lambda x: mb.softmax(x=x, axis=0), {"x": x})


def test_unknown_op_is_named(tmp_path):
    x = rand(2, 5)
    with pytest.raises(UnsupportedOpError, match=r"'cumsum' \(op #\d+ producing"):
        run(tmp_path, lambda x: mb.cumsum(x=x, axis=1), {"x": x})


def mil_op_types(package) -> set[str]:
    """Op types of every function and nested block, read from the saved spec by coremltools (not our parser)."""
    spec = ct.utils.load_spec(str(package))
    types: set[str] = set()

    def walk(block):
        for o in block.operations:
            types.add(o.type)
            for b in o.blocks:
                walk(b)

    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            walk(block)
    return types


def test_ops_mobilevit_emits_are_unit_tested(tmp_path):
    """Every op in the Core ML programs we export (each precision and opset variant) is implemented and has a test
    above."""
    from mvit_deploy.pipeline.export import export
    from mvit_deploy.targets import ExportOptions

    variants = [
        dict(precision="fp32"),
        dict(precision="fp16"),
        dict(precision="int8"),
        dict(precision="int8", target_options={"min_target": "iOS18"}),
        dict(precision="w8a8", target_options={"min_target": "iOS17"}),
    ]
    emitted = set()
    for i, kw in enumerate(variants):  # input_size 64 for speed: the op types are the same as at 256 (checked)
        opts = ExportOptions(
            model="mobilevit_xxs", target="coreml", input_size=64, calib_samples=2, out_dir=tmp_path / str(i), **kw
        )
        emitted |= mil_op_types(export(opts, run_parity=False).artifact)
    assert {
        "conv",
        "classify",
        "constexpr_affine_dequantize",
        "constexpr_blockwise_shift_scale",
        "quantize",
        "dequantize",
    } <= emitted
    unimplemented = emitted - set(OPS)
    assert not unimplemented, f"exported programs use ops the executor lacks: {sorted(unimplemented)}"
    source = open(__file__).read()
    tested = set(re.findall(r"mb\.(\w+)\(", source)) | set(
        re.findall(r'\("(\w+)", ', source)
    )  # direct calls, parametrized names
    tested |= {"const", "classify"}  # consts carry every weight; classify: test_classify_returns_label_and_dict
    missing = emitted - tested
    assert not missing, f"emitted but untested here: {sorted(missing)}"
