"""stfusion: spatiotemporal fusion in 3D CNNs, the probabilistic method, in Keras 3 / TensorFlow.

Importing the package turns on TensorFlow's oneDNN CPU kernels (``TF_ENABLE_ONEDNN_OPTS=1``)
unless the environment already says otherwise. Why: TensorFlow enables them by default only on
CPUs with AVX-512 VNNI / BF16 / AMX; elsewhere its CPU convolutions are Eigen's, and a training
step of the mid-size template took 2x as long (measured with ``bench/model.py``: 6.6 clips/s
with the 3D convolutions of TensorFlow's own CPU kernels, 14.3 with oneDNN and
``layers/planar_conv3d.py``). TensorFlow reads the variable once, when it is imported: the
entry points (``python -m stfusion_tf.<tool>``) import this package first; a script of your own
that imports TensorFlow before ``stfusion_tf`` must set the variable itself.
``TF_ENABLE_ONEDNN_OPTS=0`` turns the kernels off (their float rounding differs slightly).
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
