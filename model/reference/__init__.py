"""The reference model: SPEC v1 as the simplest Python that runs.

Plain data (``state.py``), one generator per op yielding at SPEC's yield
points, and named invariant predicates.  Entry point: :class:`ReferenceKernel`.
"""

from .kernel import ReferenceKernel

__all__ = ["ReferenceKernel"]
