"""Tests of the live side (rendezvous/)."""
