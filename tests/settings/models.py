"""Settings classes the tests load."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tether.settings import Settings


class Database(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in the section is an error

    url: str = "sqlite:///app.db"
    password: SecretStr | None = None
    pool_size: int = 5


class AppSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="TTEST_")

    database: Database = Database()
    debug: bool = False
    name: str = "app"
    hosts: list[str] = Field(default_factory=list)


class Credentials(BaseModel):
    dsn: SecretStr
    jwt_secret: Annotated[SecretStr, Field(min_length=32)]
    redis_password: SecretStr


class SecretSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="TTEST_")

    credentials: Credentials
    workers: int = 1


class Loose(Settings):
    """Keys no model declares, checked by rules only."""

    model_config = SettingsConfigDict(env_prefix="TTEST_", extra="allow")


class HTTPSpec(BaseModel):
    type: Literal["http"]
    base_url: str
    timeout: float = 10.0


class RedisSpec(BaseModel):
    type: Literal["redis"]
    url: SecretStr


class ResourcesFile(BaseModel):
    """Shaped like the declarative resources file: named resources, tagged by type."""

    resources: dict[str, Annotated[HTTPSpec | RedisSpec, Field(discriminator="type")]]
