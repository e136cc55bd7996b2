"""Suite-wide settings.

Tests check the compiled code itself, so a first call waits for its module
instead of starting on the interpreter (``config.background_compile`` is
the default for users; tests/runtime/test_tiered_runner.py covers it).
"""

import tracejit as tj

tj.config.background_compile = False
