"""tether ties a service's shared resources to its lifetime.

One ``Container`` builds, injects, health-checks, measures and disposes what a
service shares. ``import tether`` imports no third-party package.
"""

from ._active import ActiveScope
from ._container import Container
from ._health import HealthReport, HealthStatus, ResourceHealth
from ._markers import Inject, Named
from ._providers import resource
from ._scope import Scope
from ._stats import Instrumentation, RegistrationMetrics

__all__ = [
    "ActiveScope",
    "Container",
    "HealthReport",
    "HealthStatus",
    "Inject",
    "Instrumentation",
    "Named",
    "RegistrationMetrics",
    "ResourceHealth",
    "Scope",
    "resource",
]

__version__ = "0.1.0"
