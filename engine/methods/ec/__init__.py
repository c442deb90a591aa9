"""Erase at the Core: auxiliary modules at supervision points, contrastive unlearning + deep supervision."""
