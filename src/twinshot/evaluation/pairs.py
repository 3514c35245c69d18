"""Labelled pairs files (``path1,path2,same``): see :mod:`twinshot.data.pairs`, where the
reader and writer live (data never imports evaluation); kept here for existing imports."""

from twinshot.data.pairs import Pair, read_pairs_csv, write_pairs_csv

__all__ = ["Pair", "read_pairs_csv", "write_pairs_csv"]
