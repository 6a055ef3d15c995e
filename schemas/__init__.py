"""Avro schemas of logstore: the shipped record types, the registry and the Avro <-> Arrow bridge.

    import schemas
    s = schemas.load("model_score")            # a shipped record type, parsed
    schemas.to_arrow(s)                         # its Arrow schema (mapping table in schemas.arrow)
    schemas.check_compatibility(new, [s], "BACKWARD")   # [] or the reasons it breaks

Submodules: `avro` (normal form, canonical form, fingerprint), `parse` (a schema from anything),
`arrow` (type mapping), `compat` (compatibility), `resolve` (reading old data with a new schema),
`conform` (validating appended data; `validate` names the bad record and holds the union branch
rules), `unions` (Avro unions as Arrow dense unions: building them, their other forms),
`registry` (versions on disk), `wire` (Confluent wire format), `avrofile` (Avro files).
"""

from schemas import avrofile, wire
from schemas.arrow import from_arrow, to_arrow
from schemas.avro import canonical_form, fingerprint, names
from schemas.compat import MODES, check_compatibility
from schemas.conform import conform
from schemas.parse import load, parse
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
