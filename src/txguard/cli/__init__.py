"""The ``txguard`` command line. Each module of this package that defines ``register(app)``
adds its commands; modules import heavy libraries inside their commands, not at import time."""
