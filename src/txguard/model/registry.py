"""The model registry: immutable, signed version directories and their stages.

Layout under ``root``::

    versions/<version>/model.txt        LightGBM model (text)
                       spec.yaml        the feature spec the server builds its FeatureEngine from
                       policy.json      thresholds and segment overrides
                       calibration.json Platt scaling
                       metrics.json     evaluation on the test period
                       meta.json        feature names, spec hash, data fingerprint, periods,
                                        creation time, code version, training parameters
                       [card.html]      model card, when written at training time
                       MANIFEST.json    sha256 of every file above
                       SIGNATURE        HMAC-SHA256(signing key, MANIFEST.json bytes), hex
    stages.json + stages.sig            production version, promotion history, archived versions

Loading re-hashes every file, refuses any file not in the manifest, and checks the signature, so a
flipped byte or a swapped file raises :class:`IntegrityError`. A version is a *candidate* until
promoted; promoting archives the previous production version, and ``rollback`` brings it back.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from txguard.domain.clock import Clock, SystemClock
from txguard.domain.errors import (
    ConfigurationError,
    ConflictError,
    FieldError,
    IntegrityError,
    NotFoundError,
    ValidationError,
)
from txguard.model.policy import Policy
from txguard.model.scorer import Calibration, ModelBundle

MANIFEST = "MANIFEST.json"
SIGNATURE = "SIGNATURE"
_REQUIRED = (
    "model.txt",
    "spec.yaml",
    "policy.json",
    "calibration.json",
    "metrics.json",
    "meta.json",
)
_STAGES = "stages.json"
_STAGES_SIG = "stages.sig"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: str
    stage: str  # candidate | production | archived
    created_at: str
    feature_spec_hash: str
    policy_version: str
    metrics: dict[str, Any]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=True).encode() + b"\n"


def load_spec(yaml_text: str) -> Any:
    """The feature helper's ``FeatureSpec`` from YAML."""
    from txguard.features.spec import FeatureSpec

    return FeatureSpec.from_yaml(yaml_text)


class Registry:
    """Signed model versions under ``root``; ``signing_key`` from ``Settings.signing_key``."""

    def __init__(self, root: Path, signing_key: str, *, clock: Clock | None = None) -> None:
        if not signing_key:
            raise ConfigurationError("registry signing key is empty (TXGUARD_SIGNING_KEY)")
        self.root = Path(root)
        self._key = signing_key.encode()
        self._clock = clock or SystemClock()

    # ------------------------------------------------------------------ signing
    def _sign(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def _dir(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise ValidationError([FieldError("version", f"not a version id: {version!r}")])
        d = self.root / "versions" / version
        if not d.is_dir():
            raise NotFoundError(f"no model version {version!r} in {self.root}")
        return d

    def verify(self, version: str) -> dict[str, Any]:
        """Check signature and every file hash; return the manifest. Raises IntegrityError."""
        d = self._dir(version)
        try:
            manifest_bytes = (d / MANIFEST).read_bytes()
            signature = (d / SIGNATURE).read_text().strip()
        except FileNotFoundError as e:
            raise IntegrityError(f"model {version}: {Path(e.filename).name} is missing") from e
        if not hmac.compare_digest(self._sign(manifest_bytes), signature):
            raise IntegrityError(
                f"model {version}: signature does not verify (manifest altered or signed with "
                "another key)"
            )
        manifest: dict[str, Any] = json.loads(manifest_bytes)
        files: dict[str, str] = manifest["files"]
        present = {p.name for p in d.iterdir()} - {MANIFEST, SIGNATURE}
        extra = present - set(files)
        if extra:
            raise IntegrityError(f"model {version}: files not in the manifest: {sorted(extra)}")
        for name, digest in sorted(files.items()):
            path = d / name
            if not path.exists():
                raise IntegrityError(f"model {version}: {name} is missing")
            if _sha256(path) != digest:
                raise IntegrityError(f"model {version}: {name} was modified (sha256 mismatch)")
        if manifest.get("version") != version:
            raise IntegrityError(f"model {version}: manifest names {manifest.get('version')!r}")
        return manifest

    # ------------------------------------------------------------------ writing
    def register(
        self,
        *,
        model_text: str,
        spec_yaml: str,
        policy: Policy,
        calibration: Calibration,
        metrics: dict[str, Any],
        meta: dict[str, Any],
        extra_files: dict[str, bytes] | None = None,
    ) -> str:
        """Write a new immutable candidate version and return its id."""
        created = self._clock.now()
        contents: dict[str, bytes] = {
            "model.txt": model_text.encode(),
            "spec.yaml": spec_yaml.encode(),
            "policy.json": _dumps(policy.to_dict()),
            "calibration.json": _dumps(calibration.to_dict()),
            "metrics.json": _dumps(metrics),
            "meta.json": _dumps({**meta, "created_at": created.isoformat()}),
        }
        for name, data in (extra_files or {}).items():
            if name in contents or name in (MANIFEST, SIGNATURE) or "/" in name:
                raise ValidationError([FieldError("extra_files", f"reserved name {name!r}")])
            contents[name] = data
        digest = hashlib.sha256(b"".join(hashlib.sha256(v).digest() for v in contents.values()))
        version = f"v{created:%Y%m%d-%H%M%S}-{digest.hexdigest()[:8]}"
        versions = self.root / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        final = versions / version
        if final.exists():
            raise ConflictError(f"model version {version} already exists")
        tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=versions))
        try:
            for name, data in contents.items():
                (tmp / name).write_bytes(data)
            manifest = {
                "format": 1,
                "version": version,
                "created_at": created.isoformat(),
                "files": {
                    name: hashlib.sha256(data).hexdigest() for name, data in contents.items()
                },
                "feature_spec_hash": meta.get("feature_spec_hash"),
                "policy_version": policy.version,
                "data_fingerprint": meta.get("data_fingerprint"),
                "code_version": meta.get("code_version"),
            }
            mbytes = _dumps(manifest)
            (tmp / MANIFEST).write_bytes(mbytes)
            (tmp / SIGNATURE).write_text(self._sign(mbytes) + "\n")
            for p in tmp.iterdir():
                p.chmod(0o444)
            tmp.chmod(0o555)
            os.rename(tmp, final)
        except BaseException:
            tmp.chmod(0o755)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    # ------------------------------------------------------------------ reading
    def _versions(self) -> list[str]:
        d = self.root / "versions"
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _json(self, version: str, name: str) -> Any:
        return json.loads((self._dir(version) / name).read_text())

    def list(self) -> list[VersionInfo]:
        """Every version, oldest first (ids start with their UTC creation time)."""
        st = self._stages()
        out = []
        for v in self._versions():
            try:
                meta = self._json(v, "meta.json")
                metrics = self._json(v, "metrics.json")
                policy = Policy.from_dict(self._json(v, "policy.json"))
            except (OSError, ValueError, ValidationError):
                meta, metrics, policy_version = {}, {}, "?"
            else:
                policy_version = policy.version
            out.append(
                VersionInfo(
                    version=v,
                    stage=self._stage_of(v, st),
                    created_at=str(meta.get("created_at", "")),
                    feature_spec_hash=str(meta.get("feature_spec_hash", "")),
                    policy_version=policy_version,
                    metrics={
                        k: metrics.get(k) for k in ("auc_roc", "average_precision", "cp_at_100")
                    },
                )
            )
        return out

    def show(self, version: str) -> dict[str, Any]:
        """Manifest (verified), meta, metrics and policy of one version, for humans."""
        manifest = self.verify(version)
        return {
            "version": version,
            "stage": self._stage_of(version, self._stages()),
            "manifest": manifest,
            "meta": self._json(version, "meta.json"),
            "metrics": self._json(version, "metrics.json"),
            "policy": self._json(version, "policy.json"),
        }

    def load(self, version: str) -> ModelBundle:
        """Verify and load a version. Raises NotFoundError or IntegrityError."""
        self.verify(version)
        d = self._dir(version)
        meta = self._json(version, "meta.json")
        spec_text = (d / "spec.yaml").read_text()
        spec = load_spec(spec_text)
        names = tuple(meta["feature_names"])
        if tuple(spec.names) != names:
            raise IntegrityError(f"model {version}: spec feature names differ from the model's")
        if meta.get("feature_spec_hash") and spec.hash != meta["feature_spec_hash"]:
            raise IntegrityError(f"model {version}: spec.yaml hash differs from the recorded one")
        return ModelBundle(
            version=version,
            model_text=(d / "model.txt").read_text(),
            feature_names=names,
            spec=spec,
            policy=Policy.from_dict(self._json(version, "policy.json")),
            calibration=Calibration.from_dict(self._json(version, "calibration.json")),
            metrics=self._json(version, "metrics.json"),
            meta=meta,
        )

    def production(self) -> str | None:
        prod = self._stages().get("production")
        return str(prod) if prod else None

    def load_production(self) -> ModelBundle:
        v = self.production()
        if v is None:
            raise NotFoundError(f"no production model in {self.root} (train one with --promote)")
        return self.load(v)

    # ------------------------------------------------------------------ stages
    @staticmethod
    def _stage_of(version: str, st: dict[str, Any]) -> str:
        if st.get("production") == version:
            return "production"
        if version in st.get("archived", []):
            return "archived"
        return "candidate"

    def _stages(self) -> dict[str, Any]:
        path = self.root / _STAGES
        if not path.exists():
            return {"production": None, "history": [], "archived": []}
        data = path.read_bytes()
        sig = (
            (self.root / _STAGES_SIG).read_text().strip()
            if (self.root / _STAGES_SIG).exists()
            else ""
        )
        if not hmac.compare_digest(self._sign(data), sig):
            raise IntegrityError(f"{path}: stage file signature does not verify")
        out: dict[str, Any] = json.loads(data)
        return out

    def _write_stages(self, st: dict[str, Any]) -> None:
        data = _dumps(st)
        for name, blob in ((_STAGES, data), (_STAGES_SIG, (self._sign(data) + "\n").encode())):
            tmp = self.root / f".{name}.tmp"
            tmp.write_bytes(blob)
            os.replace(tmp, self.root / name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def promote(self, version: str) -> None:
        """Make a verified version production; the previous one is archived (and remembered
        for rollback)."""
        self.verify(version)
        with self._locked():
            st = self._stages()
            prev = st.get("production")
            if prev == version:
                return
            if prev:
                st["history"].append(prev)
                if prev not in st["archived"]:
                    st["archived"].append(prev)
            st["archived"] = [v for v in st["archived"] if v != version]
            st["production"] = version
            st["updated_at"] = self._clock.now().isoformat()
            self._write_stages(st)

    def rollback(self) -> str:
        """Put the previous production version back; the current one is archived. Returns it."""
        with self._locked():
            st = self._stages()
            if not st["history"]:
                raise ConflictError("nothing to roll back to: no earlier production version")
            prev = st["history"].pop()
            self.verify(prev)
            cur = st.get("production")
            if cur and cur not in st["archived"]:
                st["archived"].append(cur)
            st["archived"] = [v for v in st["archived"] if v != prev]
            st["production"] = prev
            st["updated_at"] = self._clock.now().isoformat()
            self._write_stages(st)
            return str(prev)

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """What differs between two versions: metrics, policy, spec hash, data, parameters."""
        out: dict[str, Any] = {}
        for name in ("metrics.json", "policy.json", "meta.json"):
            ja, jb = self._json(a, name), self._json(b, name)
            keys = sorted(set(ja) | set(jb))
            changed = {k: [ja.get(k), jb.get(k)] for k in keys if ja.get(k) != jb.get(k)}
            if changed:
                out[name.removesuffix(".json")] = changed
        return out
