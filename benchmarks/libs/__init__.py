"""One module per library; see ``benchmarks.cases`` for what each module provides.

The order here is the order of the report's tables before sorting. A module takes part
only in the scenarios it defines a function for (``fastapi-depends`` has only ``s4``).
"""

LIBRARIES: dict[str, str] = {
    "hand-written": "handwritten",
    "tether": "tether",
    "dishka": "dishka",
    "dependency-injector": "dependency_injector",
    "svcs": "svcs",
    "wireup": "wireup",
    "that-depends": "that_depends",
    "aioinject": "aioinject",
    "fastapi-depends": "fastapi_depends",
}
