"""Sample-quality metrics and the feature extractors they run on.

* :mod:`~gencli.metrics.stats`: streaming float64 mean/covariance, the Frechet distance (no
  scipy), pytorch-fid-compatible ``.npz`` statistics.
* :mod:`~gencli.metrics.kid`, :mod:`~gencli.metrics.inception_score`, :mod:`~gencli.metrics.prd`:
  KID (Binkowski et al. 2018), IS (Salimans et al. 2016), improved precision/recall
  (Kynkaanniemi et al. 2019), as torch-fidelity computes them.
* :mod:`~gencli.metrics.inception` (FID InceptionV3), :mod:`~gencli.metrics.vgg` (VGG16 fc2),
  :mod:`~gencli.metrics.fmnist_classifier` (bundled, offline), behind
  :mod:`~gencli.metrics.features` (``--features``); :mod:`~gencli.metrics.preprocess` holds the
  two FID preprocessing conventions; :mod:`~gencli.metrics.weights` finds network weights.
* :mod:`~gencli.metrics.runner`: inputs (folders, globs, datasets, ``.npz``, model samples) to
  features and cached statistics. ``gencli evaluate`` (gencli/cli/evaluate.py) is a thin layer
  over these.
"""
