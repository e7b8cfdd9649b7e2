"""Fast-path kernels, each beside the plain-torch reference it is tested against.

- :mod:`~gencli.kernels.winograd`: Winograd F(4x4, 3x3) convolution (``conv3x3_winograd`` /
  ``conv3x3_reference``).
- :mod:`~gencli.kernels.group_norm`: GroupNorm on NHWC memory (``group_norm_nhwc`` /
  ``group_norm_reference``).
- :mod:`~gencli.kernels.upsample`: nearest x2 + 3x3 conv as a transposed convolution
  (``upsample2x_conv3x3`` / ``upsample2x_conv3x3_reference``).
- :mod:`~gencli.kernels.narrow_conv`: convolutions to very few output channels (RGB output layers)
  as a wider convolution over groups of pixels (``conv_few_outputs`` / ``conv_few_outputs_reference``).
- :mod:`~gencli.kernels.native`: CPU kernels in C (``csrc/``), compiled on first use with the
  machine's compiler: GroupNorm (+ per-sample bias, + SiLU) on NHWC fp32/bf16 in one call, tested
  against torch's GroupNorm; without a compiler the pure-torch kernels run instead.
- :mod:`~gencli.kernels.native_winograd`: the Python side of the Winograd C kernels (transforms and
  fused convolutions) that :mod:`~gencli.kernels.winograd`, ``winograd1d`` and ``winograd2d`` call.
- :mod:`~gencli.kernels.fast_path`: ``FastState`` (options, weight caches, scratch memory) and the
  dispatch the layers' inference fast path calls.
"""
