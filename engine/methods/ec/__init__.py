"""Erase at the Core: auxiliary modules at supervision points, contrastive unlearning + deep supervision."""
from . import method  # noqa: F401 - registers EC, CU, the EC plug-in and the "aux" extra
