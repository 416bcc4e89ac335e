"""The public surface: what ``tether`` exports, and what importing it costs."""

import importlib
import inspect
import subprocess
import sys
import types

import pytest

import tether
import tether.exceptions
import tether.settings
import tether.testing
from tether.exceptions import BaseTeardownError, TeardownError, TetherError

ROOT_EXPORTS = {
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
}

EXCEPTION_EXPORTS = {
    "AsyncRequired",
    "CircuitOpen",
    "ClosedError",
    "CryptoError",
    "DecryptionError",
    "DependencyCycle",
    "DependencyNotFound",
    "DisposeTimeout",
    "GraphError",
    "InvalidCredentials",
    "InvalidSignature",
    "InvalidToken",
    "NotAllowed",
    "PoolTimeout",
    "RegistrationError",
    "ResolutionError",
    "ResourceError",
    "ResourceInitError",
    "ResourceTimeout",
    "ResourceUnavailable",
    "ScopeMismatch",
    "ScopeViolation",
    "SecurityError",
    "StartupError",
    "TeardownError",
    "BaseTeardownError",
    "TetherError",
    "UnknownKey",
    "WrongEventLoop",
}

TESTING_EXPORTS = {"FakeClock", "assert_no_leaks", "find_leaks", "overrides"}

SETTINGS_EXPORTS = {
    "ConfigFile", "Rule", "Settings", "SettingsError", "SettingsProblem", "load_file",
}

# The batteries and kits: one public module each, every other name private.
BATTERY_EXPORTS = {
    "tether.resilience": {"BreakerState", "CircuitBreaker", "Policy", "PolicyStats", "Retry"},
    "tether.resources.http": {
        "HTTPClient", "HTTPConfig", "HTTPResponse", "HTTPStats", "HTTPStatusError", "HTTPStream",
    },
    "tether.resources.database": {"Database", "DatabaseConfig", "DatabaseStats",
                                  "session_provider"},
    "tether.resources.redis": {"RedisClient", "RedisConfig", "RedisStats"},
    "tether.resources.websocket": {"WebSocketClient", "WebSocketConfig", "WebSocketStats"},
    "tether.resources.grpc": {"DEFAULT_OPTIONS", "GRPCChannel", "GRPCConfig", "GRPCStats"},
    "tether.resources.pool": {
        "FileHandle", "FileHandles", "FilesConfig", "FilesStats", "Pool", "PoolConfig",
        "PoolStats",
    },
    "tether.resources.crypto": {
        "Crypto", "CryptoConfig", "CryptoStats", "compare", "hmac_sha256", "sha256", "sha512",
    },
    "tether.resources.models": {
        "ModelRegistry", "ModelRegistryStats", "ModelStats", "ModelsConfig", "bind_model",
    },
    "tether.cache": {
        "Cache", "CacheStats", "HybridCache", "HybridCacheConfig", "MemoryCache",
        "MemoryCacheConfig", "RedisCache", "RedisCacheConfig", "RedisCacheStats",
        "SerializationError", "cached", "cached_dependency", "invalidate",
        "singleton_dependency",
    },
    "tether.security": {
        "Authenticator", "Claims", "InvalidCredentials", "InvalidToken", "MemoryRateLimits",
        "MemorySessionStore", "MemoryTokenStore", "MemoryUsers", "NotAllowed",
        "PasswordHasher", "Permissions", "Principal", "RateLimit", "RateLimitBackend",
        "RateLimitResult", "RateLimiter", "RateLimiterConfig", "RateLimiterStats",
        "RedisRateLimits", "RedisSessionStore", "RedisTokenStore", "SecurityError",
        "Session", "SessionConfig", "SessionStats", "SessionStore", "Sessions",
        "TokenConfig", "TokenPair", "TokenStats", "TokenStore", "Tokens", "User",
        "UserStore",
    },
    "tether.security.fastapi": {
        "authenticated", "current_session", "rate_limit", "require_permission",
        "require_roles", "require_scopes", "require_session", "session_validator",
    },
}
BATTERIES = [importlib.import_module(name) for name in BATTERY_EXPORTS]

PUBLIC_MODULES = [tether, tether.exceptions, tether.testing, tether.settings, *BATTERIES]


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (tether, ROOT_EXPORTS),
        (tether.exceptions, EXCEPTION_EXPORTS),
        (tether.testing, TESTING_EXPORTS),
        (tether.settings, SETTINGS_EXPORTS),
        *((module, BATTERY_EXPORTS[module.__name__]) for module in BATTERIES),
    ],
    ids=lambda v: v.__name__ if isinstance(v, types.ModuleType) else "",
)
def test_all_is_exactly_the_intended_set(module: types.ModuleType, expected: set[str]) -> None:
    assert set(module.__all__) == expected
    assert len(module.__all__) == len(set(module.__all__))


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_name_in_all_exists(module: types.ModuleType) -> None:
    missing = [name for name in module.__all__ if not hasattr(module, name)]

    assert missing == []


def test_package_root_exposes_no_public_name_outside_all() -> None:
    # Like httpx's test_exported_members: a new public name must be added on purpose.
    public_modules = {  # public submodules
        "exceptions", "testing", "fastapi", "demo", "cli", "settings", "resilience",
        "resources", "security", "cache",
    }
    stray = [
        name
        for name in dir(tether)
        if not name.startswith("_")
        and name not in tether.__all__
        and name not in public_modules
    ]

    assert stray == []


def test_every_root_export_is_defined_in_a_private_module_or_the_package() -> None:
    for name in tether.__all__:
        module = getattr(getattr(tether, name), "__module__", "tether")
        assert module == "tether" or module.startswith("tether._"), (name, module)


def _public_names() -> list[tuple[str, str]]:
    # Constants (DEFAULT_OPTIONS) cannot carry a docstring; their module's describes them.
    return [(m.__name__, name) for m in PUBLIC_MODULES for name in m.__all__
            if callable(getattr(m, name))]


def _own_doc(obj: object) -> str | None:
    if isinstance(obj, type):
        doc = obj.__dict__.get("__doc__")
        return doc if isinstance(doc, str) else None
    return inspect.getdoc(obj)


@pytest.mark.parametrize(("module", "name"), _public_names(), ids=lambda v: v)
def test_every_public_name_has_a_docstring(module: str, name: str) -> None:
    obj = getattr(sys.modules[module], name)

    doc = _own_doc(obj)

    assert doc is not None
    assert doc.strip()


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_public_module_has_a_docstring(module: types.ModuleType) -> None:
    assert module.__doc__
    assert module.__doc__.strip()


def test_version_is_a_string() -> None:
    assert isinstance(tether.__version__, str)


def test_importing_tether_imports_no_third_party_package() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import tether\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print('\\n'.join(sorted(new)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    imported = set(result.stdout.split())

    third_party = imported - set(sys.stdlib_module_names) - {"tether"}
    assert "tether" in imported
    assert third_party == set()


def test_importing_tether_exceptions_imports_no_third_party_package() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import tether.exceptions, tether.testing\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print('\\n'.join(sorted(new)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert set(result.stdout.split()) - set(sys.stdlib_module_names) - {"tether"} == set()


# -- the exception tree -------------------------------------------------------------


@pytest.mark.parametrize(
    "name", sorted(EXCEPTION_EXPORTS - {"BaseTeardownError"}), ids=lambda v: v
)
def test_every_exception_subclasses_tether_error(name: str) -> None:
    assert issubclass(getattr(tether.exceptions, name), TetherError)


def test_base_teardown_error_is_the_base_exception_group_of_teardown_error() -> None:
    # A BaseExceptionGroup cannot be an Exception, so it cannot be a TetherError.
    assert issubclass(TeardownError, BaseTeardownError)
    assert issubclass(BaseTeardownError, BaseExceptionGroup)
    assert not issubclass(BaseTeardownError, Exception)


def test_tether_error_is_an_exception() -> None:
    assert issubclass(TetherError, Exception)


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        ("RegistrationError", TypeError),
        ("DependencyNotFound", LookupError),
        ("DependencyNotFound", tether.exceptions.ResolutionError),
        ("AsyncRequired", tether.exceptions.ResolutionError),
        ("ScopeMismatch", tether.exceptions.ResolutionError),
        ("ResourceInitError", tether.exceptions.ResolutionError),
        ("DependencyCycle", tether.exceptions.GraphError),
        ("ScopeViolation", tether.exceptions.GraphError),
        ("ClosedError", RuntimeError),
        ("WrongEventLoop", RuntimeError),
        ("DisposeTimeout", TimeoutError),
        ("TeardownError", ExceptionGroup),
        ("ResourceTimeout", tether.exceptions.ResourceError),
        ("ResourceTimeout", TimeoutError),
        ("PoolTimeout", tether.exceptions.ResourceTimeout),
        ("ResourceUnavailable", tether.exceptions.ResourceError),
        ("ResourceUnavailable", ConnectionError),
        ("CircuitOpen", tether.exceptions.ResourceError),
        ("DecryptionError", tether.exceptions.CryptoError),
        ("InvalidSignature", tether.exceptions.CryptoError),
        ("UnknownKey", tether.exceptions.CryptoError),
        ("UnknownKey", LookupError),
        ("InvalidToken", tether.exceptions.SecurityError),
        ("InvalidCredentials", tether.exceptions.SecurityError),
        ("NotAllowed", tether.exceptions.SecurityError),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_exception_tree_matches_its_documentation(child: str, parent: type) -> None:
    assert issubclass(getattr(tether.exceptions, child), parent)


def test_teardown_error_is_an_exception_group_of_each_error() -> None:
    first, second = ValueError("body"), OSError("dispose")

    error = TeardownError("1 finalizer failed", [first, second], [None, "Pool"])

    assert isinstance(error, ExceptionGroup)
    assert isinstance(error, TetherError)
    assert error.exceptions == (first, second)
    assert error.resources == (None, "Pool")


def test_teardown_error_can_be_caught_with_except_star() -> None:
    caught: list[BaseException] = []

    try:
        raise TeardownError("1 finalizer failed", [OSError("dispose")], ["Pool"])
    except* OSError as group:
        caught.extend(group.exceptions)

    assert [str(e) for e in caught] == ["dispose"]


def test_teardown_error_subgroup_keeps_the_type() -> None:
    error = TeardownError("2 finalizers failed", [OSError("a"), ValueError("b")], ["A", "B"])

    sub = error.subgroup(OSError)

    assert isinstance(sub, TeardownError)
    assert [str(e) for e in sub.exceptions] == ["a"]
