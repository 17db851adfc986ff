"""stfusion: spatiotemporal fusion in 3D CNNs, the probabilistic method, in Keras 3 / TensorFlow.

Importing the package turns on TensorFlow's oneDNN CPU kernels (``TF_ENABLE_ONEDNN_OPTS=1``)
unless the environment already says otherwise. Why: TensorFlow enables them by default only on
CPUs with AVX-512 VNNI / BF16 / AMX; elsewhere its CPU kernels are Eigen's, and 3D convolutions
are slow there: a training step of the mid-size template with ``tf.nn.conv3d`` everywhere took
1.6x as long without oneDNN as with it (827 vs 521 ms for 8 clips, the best of 8 rounds each;
the backbones of ``models/backbones`` run such convolutions). The template's own convolutions
run as 2D ones on a CPU (``layers/planar_conv3d.py``), which is nearly as fast either way
(543 vs 521 ms). TensorFlow reads the variable once, when it is imported: the entry points (``python -m stfusion_tf.<tool>``) import this package first; a script of your own
that imports TensorFlow before ``stfusion_tf`` must set the variable itself.
``TF_ENABLE_ONEDNN_OPTS=0`` turns the kernels off (their float rounding differs slightly).
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
