"""The export metadata under its former deployment path; defined in :mod:`anomalib_vadproto.components.metadata`.

Kept so that ``from anomalib_vadproto.deploy.metadata import ModelMetadata`` goes on working; new code
imports :class:`ModelMetadata` and :data:`METADATA_KEY` from ``anomalib_vadproto.deploy`` or from
:mod:`anomalib_vadproto.components.metadata`.
"""

from anomalib_vadproto.components.metadata import FORMAT_VERSION, METADATA_KEY, ModelMetadata

__all__ = ["FORMAT_VERSION", "METADATA_KEY", "ModelMetadata"]
