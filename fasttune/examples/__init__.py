"""Ray Tune's example modules that other example scripts import (``ray.tune.examples``).

Only those: ``pb2_example`` imports :func:`fasttune.examples.pbt_function.pbt_function`,
so a migrated ``pb2_example`` runs on fasttune.  The examples built on PyTorch, Lightning
or Transformers (``mnist_pytorch``, ``mnist_ptl_mini``, ``pbt_dcgan_mnist``,
``pbt_transformers``) are not provided (docs/compatibility.md).
"""
