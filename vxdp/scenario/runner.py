"""Running a scenario: hosts and guests as processes, the steps in order, a report.

    result = trio.run(run_scenario, load("scenarios/offload-basics.yaml"))
    result.ok, result.steps[-1].message

Theory of operation
-------------------
Every host is a `vxdp host` process (or, with `kind: smartnic`, a `vxdp smartnic`: its
slots are virtual functions) with a control socket and one vhost-user socket per guest
slot; every guest a `vxdp guest` process dialling its slot, with a control socket of its
own.  They start in a fresh directory, hosts first; a guest counts as started once
its driver is live and, when it places a program, once the placement is done (offloaded,
fallen back or refused).  Then the steps run in order: a step with `at` waits until that
many seconds after the start; everything else happens through the control sockets
(`stats`, `wire.inject`, `map.*`, `prog.*`, `guest.link`, `guest.migrate`: a migrate
or passthrough step moves a guest's back-end, and later steps find it where it went) or
as signals to the processes (kill, stop, start).  A `wait` polls a condition until it holds or its timeout
passes; an `expect` checks it once.  The first step that fails ends the run; the
processes are killed and reaped whatever happens.  Progress goes to `progress` (stderr
for `vxdp run`), one line a step.
"""

from __future__ import annotations

import errno as E
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from vxdp.control import ControlClient, RequestFailed
from vxdp.errors import UsageError, VxdpError

from .model import check
from .procs import Proc, Processes, processes
from .schema import STEPS

#: How long a `wait` waits unless it says otherwise, and how often it looks.
WAIT_TIMEOUT = 10.0
POLL = 0.05
#: How long a started process may take to come up (and a guest to place its program).
START_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 120.0


class StepFailed(VxdpError):
    """A step whose outcome is not what the scenario says (the run's verdict: fail)."""


@dataclass
class StepResult:
    index: int
    kind: str
    line: int
    ok: bool
    message: str
    seconds: float


@dataclass
class ScenarioResult:
    name: str
    source: str
    ok: bool = False
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "ok": self.ok,
                "seconds": round(self.seconds, 3), "error": self.error,
                "steps": [asdict(s) for s in self.steps]}

    def summary(self) -> str:
        if self.ok:
            return (f"scenario {self.name}: passed ({len(self.steps)} steps, "
                    f"{self.seconds:.1f} s)")
        return f"scenario {self.name}: FAILED: {self.error}"


def _program_object(path: str, cache: dict[str, str]) -> str:
    """An object file for a scenario's `xdp:` (a .c is compiled with clang, once)."""
    if path.endswith(".o"):
        return path
    if path not in cache:
        from vxdp.bpf.clang import clang_unavailable, compile_c
        if (why := clang_unavailable()) is not None:
            raise UsageError(f"program {path}: {why}")
        cache[path] = str(compile_c(Path(path), flags=[f"-I{Path(path).parent}"]))
    return cache[path]


class Runner:
    """One run of one scenario (see the module docstring)."""

    def __init__(self, scenario: dict[str, Any], workdir: Path,
                 progress: Callable[[str], None]) -> None:
        self.sc = scenario
        self.dir = workdir
        self.say = progress
        self.procs: dict[str, Proc] = {}
        self.argv: dict[str, list[str]] = {}
        self.objects: dict[str, str] = {}
        #: where each guest's back-end is now (a migrate or passthrough step moves it)
        self.at: dict[str, tuple[str, int]] = {
            name: (g["host"], int(g["slot"])) for name, g in scenario["guests"].items()}
        self.t0 = 0.0

    # -- the parts -----------------------------------------------------------------

    def ctl(self, name: str) -> Path:
        return self.dir / f"{name}.ctl"

    def sock(self, host: str, slot: int) -> Path:
        return self.dir / f"{host}-g{slot}.sock"

    def guest_slot(self, name: str) -> tuple[str, int]:
        return self.at[name]

    def kind(self, name: str) -> str:
        """What process `name` is: host, smartnic or guest."""
        if name in self.sc["hosts"]:
            return str(self.sc["hosts"][name].get("kind", "host"))
        return "guest"

    def _host_argv(self, name: str) -> list[str]:
        h = self.sc["hosts"][name]
        argv = ["host", "--profile", h.get("profile", "host"), "--engine",
                h.get("engine", "interp")] if self.kind(name) == "host" else ["smartnic"]
        argv += ["--datapath", h.get("datapath", "c"), "--control", str(self.ctl(name)),
                 "--wire", "null"]
        for slot in range(int(h.get("guests", 1))):
            argv += ["--socket", str(self.sock(name, slot))]
        return argv + self._xdp(h)

    def _guest_argv(self, name: str) -> list[str]:
        g = self.sc["guests"][name]
        host, slot = self.guest_slot(name)
        argv = ["guest", "--socket", str(self.sock(host, slot)), "--control",
                str(self.ctl(name)), "--retry", "0.05", "--datapath", g.get("datapath", "c")]
        if "xdp" in g:
            argv += [*self._xdp(g), "--mode", g.get("mode", "driver")]
        return argv

    def _xdp(self, spec: dict[str, Any]) -> list[str]:
        if "xdp" not in spec:
            return []
        out = ["--xdp", _program_object(spec["xdp"], self.objects)]
        for key in ("section", "program"):
            if key in spec:
                out += [f"--{key}", spec[key]]
        return out

    async def call(self, name: str, op: str, **args: Any) -> Any:
        """One control request to `name` (from a worker thread: the client blocks)."""
        path = self.ctl(name)

        def go() -> Any:
            with ControlClient(path, timeout=60) as client:
                return client.call(op, **args)
        return await trio.to_thread.run_sync(go)

    async def start(self, procs: Processes, name: str) -> None:
        """Start host or guest `name` and wait until it is up (see the docstring)."""
        kind = self.kind(name)
        is_host = kind != "guest"
        # a guest dials where its back-end is now (it may have moved since it started)
        self.argv[name] = self._host_argv(name) if is_host else self._guest_argv(name)
        with trio.fail_after(START_TIMEOUT):
            proc = await procs.start(name, *self.argv[name])
            self.procs[name] = proc
            await proc.wait_for(f"vxdp {kind}: serving" if is_host else "device_ready")
            g = self.sc["guests"].get(name, {})
            if not is_host and "xdp" in g and g.get("mode", "driver") != "driver":
                while (await self.call(name, "stats"))["offload"]["state"] == "none":
                    await trio.sleep(POLL)
        self.say(f"{name} up ({' '.join(self.argv[name][:1])})")

    # -- the steps -------------------------------------------------------------------

    async def step(self, procs: Processes, step: dict[str, Any]) -> str:
        kind = next(k for k in step if k in STEPS)
        args = step[kind]
        handler = getattr(self, f"_{kind}")
        return str(await handler(procs, args))

    async def _sleep(self, procs: Processes, seconds: float) -> str:
        await trio.sleep(seconds)
        return f"slept {seconds} s"

    async def _wait(self, procs: Processes, cond: dict[str, Any]) -> str:
        timeout = float(cond.get("timeout", WAIT_TIMEOUT))
        text = ""
        with trio.move_on_after(timeout):
            while True:
                holds, text = check(await self.call(cond["node"], "stats"), cond)
                if holds:
                    return f"{cond['node']}: {text}"
                await trio.sleep(POLL)
        raise StepFailed(f"{cond['node']}: not within {timeout:g} s: {text}")

    async def _expect(self, procs: Processes, cond: dict[str, Any]) -> str:
        holds, text = check(await self.call(cond["node"], "stats"), cond)
        if not holds:
            raise StepFailed(f"{cond['node']}: {text}")
        return f"{cond['node']}: {text}"

    async def _expect_map(self, procs: Processes, a: dict[str, Any]) -> str:
        key = _hex(a["key"])
        try:
            got = await self.call(a["node"], "map.lookup", map=a["map"], key=key)
        except RequestFailed as exc:
            if a.get("absent") and exc.error.errno == E.ENOENT:
                return f"{a['node']}: map {a['map']}: no key {key}, as expected"
            raise StepFailed(f"{a['node']}: map {a['map']} key {key}: {exc.error.message}") \
                from None
        if a.get("absent"):
            raise StepFailed(f"{a['node']}: map {a['map']} key {key} is {got['value']}, "
                             f"expected absent")
        if got["value"] != _hex(a["value"]):
            raise StepFailed(f"{a['node']}: map {a['map']} key {key} is {got['value']}, "
                             f"expected {_hex(a['value'])}")
        return f"{a['node']}: map {a['map']} key {key} = {got['value']}"

    async def _traffic(self, procs: Processes, a: dict[str, Any]) -> str:
        args: dict[str, Any] = {k: a[k] for k in ("count", "seed", "size", "flows", "mix")
                                if k in a}
        if "guest" in a:
            host, slot = self.guest_slot(a["guest"])
            if host != a["host"]:
                raise UsageError(f"traffic: guest {a['guest']!r} is on {host!r}, not "
                                 f"{a['host']!r}")
            args["guest"] = slot
        sent = (await self.call(a["host"], "wire.inject", **args))["sent"]
        to = f" to {a['guest']}" if "guest" in a else ""
        return f"{a['host']}: {sent} frames from the wire{to}"

    async def _map_update(self, procs: Processes, a: dict[str, Any]) -> str:
        await self.call(a["node"], "map.update", map=a["map"], key=_hex(a["key"]),
                        value=_hex(a["value"]), flags=a.get("flags", "any"))
        return f"{a['node']}: map {a['map']} key {_hex(a['key'])} := {_hex(a['value'])}"

    async def _map_delete(self, procs: Processes, a: dict[str, Any]) -> str:
        await self.call(a["node"], "map.delete", map=a["map"], key=_hex(a["key"]))
        return f"{a['node']}: map {a['map']} key {_hex(a['key'])} deleted"

    async def _attach(self, procs: Processes, a: dict[str, Any]) -> str:
        args: dict[str, Any] = {"path": _program_object(a["xdp"], self.objects)}
        args.update({k: a[k] for k in ("section", "program", "mode") if k in a})
        try:
            got = await self.call(a["node"], "prog.attach", **args)
        except RequestFailed as exc:
            if a.get("refused"):
                return f"{a['node']}: refused, as expected: {exc.error.message}"
            raise StepFailed(f"{a['node']}: attach refused: {exc.error.message}") from None
        if a.get("refused"):
            raise StepFailed(f"{a['node']}: the program was placed ({got}), expected a refusal")
        where = got.get("state", "host-attached")
        return f"{a['node']}: {got.get('name')} {where}"

    async def _detach(self, procs: Processes, a: dict[str, Any]) -> str:
        got = await self.call(a["node"], "prog.detach")
        return f"{a['node']}: {got.get('name')} detached"

    async def _link(self, procs: Processes, a: dict[str, Any]) -> str:
        host, slot = self.guest_slot(a["guest"])
        await self.call(host, "guest.link", guest=slot, up=bool(a["up"]))
        return f"{a['guest']}: link {'up' if a['up'] else 'down'}"

    async def _migrate(self, procs: Processes, a: dict[str, Any]) -> str:
        return await self._move(a["guest"], a["to"], int(a["slot"]),
                                a.get("policy", "refuse"), a.get("outcome"))

    async def _passthrough(self, procs: Processes, a: dict[str, Any]) -> str:
        """A migration onto a SmartNIC's virtual function that offloads the program
        again there (policy reoffload); `placement` is where it must run afterwards."""
        message = await self._move(a["guest"], a["nic"], int(a["slot"]), "reoffload", None)
        if "placement" in a:
            state = (await self.call(a["guest"], "stats"))["offload"]
            if state["state"] != a["placement"]:
                raise StepFailed(f"{a['guest']}: the program is {state['state']} after the "
                                 f"passthrough, expected {a['placement']}: {message}; "
                                 f"{state['reason']}")
        return message

    async def _move(self, guest: str, to: str, slot: int, policy: str,
                    outcome: str | None) -> str:
        """`guest.migrate` to `to`'s socket `slot`; the outcome must be `outcome` (by
        default anything but a refusal); the guest is then where it moved."""
        report = await self.call(guest, "guest.migrate", to=str(self.sock(to, slot)),
                                 policy=policy)
        got = report["outcome"]
        first = report["reason"] or got
        if (outcome is None and got == "refused") or (outcome is not None and got != outcome):
            raise StepFailed(f"{guest}: migration to {to} {got}"
                             + (f", expected {outcome}" if outcome else "") + f": {first}")
        if got != "refused":
            self.at[guest] = (to, slot)
        if report["downtime_ms"] is None:
            return f"{guest}: {got}: {first}"
        return (f"{guest}: {got} to {to} (slot {slot}): downtime {report['downtime_ms']:.1f} "
                f"ms, {report['frames_lost']} frame(s) lost, {report['map_entries']} map "
                f"entries; the program: {report['placement'] or 'moved with the device'}")

    async def _kill(self, procs: Processes, name: str) -> str:
        proc = self.procs[name]
        proc.signal(signal.SIGKILL)
        await proc.process.wait()
        return f"{name} killed"

    async def _stop(self, procs: Processes, name: str) -> str:
        status = await self.procs[name].stop()
        return f"{name} stopped (exit {status})"

    async def _start(self, procs: Processes, name: str) -> str:
        if self.procs[name].process.poll() is None:
            raise UsageError(f"start {name}: it is still running (kill or stop it first)")
        await self.start(procs, name)
        return f"{name} started again"

    # -- the run ---------------------------------------------------------------------

    async def run(self, result: ScenarioResult) -> None:
        async with processes(self.dir) as procs:
            for name in self.sc["hosts"]:
                await self.start(procs, name)
            for name in self.sc["guests"]:
                await self.start(procs, name)
            self.t0 = time.monotonic()
            for i, step in enumerate(self.sc["steps"]):
                kind = next(k for k in step if k in STEPS)
                line = self.sc["step_lines"][i]
                if "at" in step:
                    await trio.sleep(max(0.0, self.t0 + float(step["at"]) - time.monotonic()))
                started = time.monotonic()
                try:
                    message = await self.step(procs, step)
                except (StepFailed, RequestFailed, VxdpError, OSError) as exc:
                    # a failed expectation, a refused request, a process or socket gone
                    text = exc.error.message if isinstance(exc, RequestFailed) else str(exc)
                    where = f"step {i} ({kind}, line {line})"
                    result.steps.append(StepResult(i, kind, line, False, text,
                                                   time.monotonic() - started))
                    self.say(f"[{time.monotonic() - self.t0:7.2f}s] {where}: FAILED: {text}")
                    result.error = f"{where}: {text}"
                    return
                result.steps.append(StepResult(i, kind, line, True, message,
                                               time.monotonic() - started))
                label = f" {step['name']}:" if "name" in step else ""
                self.say(f"[{time.monotonic() - self.t0:7.2f}s] step {i} {kind}:{label} "
                         f"{message}")
            result.ok = True


def _hex(text: Any) -> str:
    return "".join(str(text).split()).lower().removeprefix("0x")


async def run_scenario(scenario: dict[str, Any], *,
                       progress: Callable[[str], None] = lambda line: None,
                       workdir: Path | None = None) -> ScenarioResult:
    """Run a loaded scenario (`schema.load`) to its end or its first failed step."""
    result = ScenarioResult(scenario["name"], scenario.get("source", ""))
    made = workdir is None
    base = Path(tempfile.mkdtemp(prefix="vxdp-run-")) if workdir is None else workdir
    started = time.monotonic()
    try:
        with trio.move_on_after(float(scenario.get("timeout", DEFAULT_TIMEOUT))) as scope:
            await Runner(scenario, base, progress).run(result)
        if scope.cancelled_caught:
            result.ok = False
            result.error = (f"timed out after {scenario.get('timeout', DEFAULT_TIMEOUT)} s "
                            f"(step {len(result.steps)} did not finish)")
    except AssertionError as exc:  # a process that exited before it came up
        result.ok, result.error = False, str(exc).splitlines()[0]
    finally:
        result.seconds = time.monotonic() - started
        if made:
            shutil.rmtree(base, ignore_errors=True)
    return result


__all__ = ["ScenarioResult", "StepFailed", "StepResult", "run_scenario"]
