"""Narrows planledger's OpenAPI document for fuzzing (.ci/schemathesis).

The published document gives plan ids, action names and time zones as strings with today's
values as `examples`, marked `x-planledger-known` (the catalog is data; a generated client must
not freeze it). Any string is schema-valid there, and an unknown plan is refused 422, which the
`positive_data_acceptance` check counts as a failure. So the fuzzer is given the same document
with each marked string narrowed to its known values (and `null`, where the field takes it).
Narrowing a request schema only restricts what is sent: every answer is still checked against
the published response schemas.

    python3 .ci/narrow-openapi.py < published.json > narrowed.json
"""

import json
import sys


def narrow(node):
    if isinstance(node, dict):
        if "x-planledger-known" in node and "examples" in node:
            values = list(node["examples"])
            types = node.get("type")
            if isinstance(types, list) and "null" in types:
                values.append(None)
            node["enum"] = values
            node.pop("pattern", None)
        for value in node.values():
            narrow(value)
    elif isinstance(node, list):
        for value in node:
            narrow(value)


document = json.load(sys.stdin)
narrow(document)
json.dump(document, sys.stdout)
