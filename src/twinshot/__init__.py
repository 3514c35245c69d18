"""twinshot: Siamese networks and one-shot learning.

Train a Siamese encoder on pairs, triplets or episodes, evaluate it with the field's
standard protocols, calibrate a threshold, enroll one reference per class and recognise.
"""

__version__ = "0.1.0"
