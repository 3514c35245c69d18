"""Losses for Siamese and few-shot training, each an ``nn.Module`` registered in :data:`LOSSES`.

========================  =================  ================================================
name                      ``batch_kind``     call
========================  =================  ================================================
``"contrastive"``         ``"pairs"``        ``loss(embeddings1, embeddings2, same)``
``"bce"``                 ``"pairs"``        ``loss(logits, same, model=None)``
``"triplet"``             ``"labelled"``     ``loss(embeddings, labels)`` or
                                             ``loss(anchor, positive, negative)``
``"prototypical"``        ``"episode"``      ``loss(support, support_labels, query, query_labels)``
``"arcface"``             ``"labelled"``     ``loss(embeddings, labels)`` (class weights, see
``"cosface"``                                :mod:`twinshot.losses.margin`; the trainer binds
``"normalized_softmax"``                     them to the training classes)
========================  =================  ================================================

``same`` is always a bool tensor (True = same class). Distances inside the losses are
smaller-is-closer (:mod:`twinshot.losses.distances`); triplet miners are in
:mod:`twinshot.losses.miners`.
"""

from twinshot.losses.base import BATCH_KINDS, LOSSES, Loss
from twinshot.losses.bce import PairBCELoss, regularised_weights
from twinshot.losses.contrastive import ContrastiveLoss
from twinshot.losses.distances import DISTANCES, CosineDistance, Distance, EuclideanDistance, SquaredEuclideanDistance
from twinshot.losses.margin import ArcFaceLoss, CosFaceLoss, MarginSoftmaxLoss, NormalizedSoftmaxLoss, bind_loss
from twinshot.losses.miners import MINERS, AllTripletsMiner, BatchHardMiner, SemiHardMiner, TripletMiner, Triplets
from twinshot.losses.prototypical import PrototypicalLoss
from twinshot.losses.triplet import TripletLoss

__all__ = [
    "LOSSES", "BATCH_KINDS", "Loss", "ContrastiveLoss", "TripletLoss", "PairBCELoss", "PrototypicalLoss",
    "regularised_weights", "DISTANCES", "Distance", "EuclideanDistance", "SquaredEuclideanDistance",
    "CosineDistance", "ArcFaceLoss", "CosFaceLoss", "NormalizedSoftmaxLoss", "MarginSoftmaxLoss", "bind_loss", "MINERS", "TripletMiner", "Triplets", "AllTripletsMiner", "BatchHardMiner", "SemiHardMiner",
]
