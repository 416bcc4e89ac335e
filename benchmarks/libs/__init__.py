"""One module per library; see ``benchmarks.cases`` for what each module provides.

The order here is the order of the report's tables before sorting.
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
}
