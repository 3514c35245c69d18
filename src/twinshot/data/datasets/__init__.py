"""Dataset-specific code, one module per dataset: file layouts, the protocol pairs written
as ``path1,path2,same`` CSVs, and the relabellings that training applies
(:data:`twinshot.data.relabel.RELABELS`).

* :mod:`twinshot.data.datasets.cedar`: CEDAR signatures (genuine / skilled forgeries);
* :mod:`twinshot.data.datasets.crossmedia`: the cross-media handwritten signatures.

These modules import only :mod:`twinshot.data` and :mod:`twinshot.errors`: never
evaluation or training.
"""
