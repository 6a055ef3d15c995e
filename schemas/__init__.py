"""Avro schemas of logstore: the shipped record types, the registry and the Avro <-> Arrow bridge.

    import schemas
    s = schemas.load("model_score")            # a shipped record type, parsed
    schemas.to_arrow(s)                         # its Arrow schema (mapping table in schemas.arrow)
    schemas.check_compatibility(new, [s], "BACKWARD")   # [] or the reasons it breaks

Submodules: `avro` (parsing, canonical form, fingerprint), `arrow` (type mapping), `compat`
(compatibility), `resolve` (reading old data with a new schema), `conform` (validating appended
data), `registry` (versions on disk), `wire` (Confluent wire format), `avrofile` (Avro files).
"""

from schemas import avrofile, wire
from schemas.arrow import from_arrow, to_arrow
from schemas.avro import canonical_form, fingerprint, load, names, parse
from schemas.compat import MODES, check_compatibility
from schemas.conform import conform
from schemas.registry import Registry, SchemaVersion
from schemas.resolve import resolve

__all__ = [
    "MODES",
    "Registry",
    "SchemaVersion",
    "avrofile",
    "canonical_form",
    "check_compatibility",
    "conform",
    "fingerprint",
    "from_arrow",
    "load",
    "names",
    "parse",
    "resolve",
    "to_arrow",
    "wire",
]
