"""personalign: learn each person's preferences instead of one averaged reward, inside bounds nobody can cross."""

from personalign.data.core import POPULATION_USER, PreferenceData
from personalign.errors import ConfigError, DataError, NotFittedError, PersonalignError

__version__ = "0.1.0"

__all__ = [
    "POPULATION_USER",
    "ConfigError",
    "DataError",
    "NotFittedError",
    "PersonalignError",
    "PreferenceData",
    "__version__",
]
