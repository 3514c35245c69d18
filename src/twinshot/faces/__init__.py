"""Faces: the networks of the ``@vladmandic/face-api`` npm package, ported to PyTorch.

* :mod:`twinshot.faces.weights` reads the package's weights (the original manifest + ``.bin``
  once, at conversion time; the packaged safetensors at run time).
* :mod:`twinshot.faces.resnet`: the dlib ResNet face descriptor (150x150 RGB -> 128-d),
  registered as the encoder ``face-resnet``.
* :mod:`twinshot.faces.detector`: the tiny face detector; :mod:`twinshot.faces.landmarks`:
  the 68-point landmark net; :mod:`twinshot.faces.align`: detection + alignment to the chip.

Nothing is downloaded at run time: the weights ship in ``twinshot/faces/face_api/`` with their
provenance (``PROVENANCE.json``) and licence (``LICENSE``).
"""
