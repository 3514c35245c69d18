"""The ``twinshot`` command. Each sub-module parses arguments, builds a config, calls one
library function and prints the result; none holds logic of its own. Heavy imports
(torch, numpy) happen inside the commands so ``twinshot --help`` answers at once."""
