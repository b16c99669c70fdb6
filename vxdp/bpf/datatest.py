"""The `.data` conformance files of ubpf and bpf_conformance: parse, validate, run.

A file is a sequence of sections, each opened by a `-- NAME` line; `#` lines before the
first section are the description.  Sections (all optional but see the schema):

    -- asm                  program in the ubpf dialect (vxdp.bpf.asm)
    -- raw                  program as hex 64-bit words, one a line (0x5566778800000018)
    -- mem                  hex bytes handed to the program (r1 = pointer, r2 = length)
    -- result               expected r0, hex (0x...) or decimal
    -- error                expected failure (the text of the original harness)
    -- error pattern        expected failure (a regex over the original harness's text)
    -- c                    C source the asm was compiled from (informational)
    -- no register offset   ubpf's JIT tests remap registers ("register offset"); a test
                            that depends on the raw argument registers says so here, with
                            the reason.  We have no register remapping: informational.
    -- reload, -- unload    ubpf harness options (load twice, unload first): flags only

Schema: at least one of `result` / `error` / `error pattern`; at least one of `asm` / `raw`
/ `c`; no section twice; nothing but comments and blank lines before the first section.
A file with only C has nothing to run here: it is *skipped*, and counted as such.  When both
`asm` and `raw` are present the raw words run (as in ubpf) and the assembled asm must equal
them: a difference fails the file, since it is our assembler that is wrong or the file.

The runner first holds the program to the ISA's structural rules (vxdp.bpf.isa.check_program:
reserved fields, registers, jumps, fall-through), then hands it to an engine callable
`run_raw(insns: bytes, mem: bytes) -> int` (r0 as u64) that raises a `VxdpError` when it
refuses or aborts a program.  With a `result`, r0 must equal it.  Without one, the file
passes when the program is refused or faults: the wording of another implementation's
error is not ours to match, so only the fact of the error is compared.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from vxdp.bpf.asm import assemble
from vxdp.bpf.isa import check_program, decode, encode
from vxdp.errors import UsageError, VxdpError

RunRaw = Callable[[bytes, bytes], int]

SECTIONS = ("asm", "raw", "mem", "result", "error", "error pattern", "c",
            "no register offset", "reload", "unload")
_HEADER = re.compile(r"^--\s+(.*?)\s*$")
U64 = (1 << 64) - 1


class DataFileError(UsageError):
    """A `.data` file that breaks the schema: names the file and the line."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line


@dataclass(frozen=True)
class DataTest:
    """One parsed `.data` file."""

    path: Path
    description: tuple[str, ...] = ()
    asm: str | None = None
    asm_line: int = 0  # line of the first asm line, to map assembler errors back
    raw: bytes | None = None
    mem: bytes = b""
    result: int | None = None
    error: str | None = None
    error_pattern: str | None = None
    c_source: str | None = None
    no_register_offset: str | None = None  # the stated reason, "" when none was given
    reload: bool = False
    unload: bool = False

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def expects_error(self) -> bool:
        return self.result is None

    def assembled(self) -> bytes | None:
        """The asm section assembled (None without one); errors point into the file."""
        if self.asm is None:
            return None
        try:
            return encode(assemble(self.asm))
        except VxdpError as exc:
            line = getattr(exc, "line", None)
            where = self.asm_line + line - 1 if line else self.asm_line
            raise DataFileError(self.path, where, str(exc)) from None

    def program(self) -> bytes | None:
        """The instructions to run: the raw words, else the assembled asm (None: C only)."""
        code = self.assembled()
        return self.raw if self.raw is not None else code


@dataclass
class _Section:
    name: str
    line: int
    lines: list[str] = field(default_factory=list)


def _sections(path: Path, text: str) -> tuple[list[str], list[_Section]]:
    description: list[str] = []
    sections: list[_Section] = []
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            name = header.group(1)
            if name not in SECTIONS:
                raise DataFileError(path, number, f"unknown section '-- {name}' "
                                    f"(expected one of {', '.join(SECTIONS)})")
            if any(s.name == name for s in sections):
                raise DataFileError(path, number, f"section '-- {name}' appears twice")
            sections.append(_Section(name, number))
        elif sections:
            sections[-1].lines.append(line)
        elif line.strip().startswith("#"):
            description.append(line.strip().lstrip("#").strip())
        elif line.strip():
            raise DataFileError(path, number, "text before the first '-- section'")
    return description, sections


def _body(section: _Section) -> list[tuple[int, str]]:
    """Non-blank, non-comment lines with their line numbers."""
    out = []
    for i, line in enumerate(section.lines, section.line + 1):
        text = line.split("#", 1)[0].strip()
        if text:
            out.append((i, text))
    return out


def _number(path: Path, line: int, text: str) -> int:
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise DataFileError(path, line, f"expected a number, got {text!r}") from None
    if not -(1 << 63) <= value <= U64:
        raise DataFileError(path, line, f"{text} does not fit in 64 bits")
    return value & U64


def parse_text(path: Path, text: str) -> DataTest:
    description, sections = _sections(path, text)
    by_name = {s.name: s for s in sections}
    fields: dict[str, object] = {"description": tuple(description)}
    if "asm" in by_name:
        s = by_name["asm"]
        fields["asm"] = "\n".join(s.lines)
        fields["asm_line"] = s.line + 1
    if "raw" in by_name:
        words = bytearray()
        for line, word in _body(by_name["raw"]):
            words += _number(path, line, word).to_bytes(8, "little")
        fields["raw"] = bytes(words)
    if "mem" in by_name:
        mem = bytearray()
        for line, text_ in _body(by_name["mem"]):
            for byte in text_.split():
                if not re.fullmatch(r"[0-9a-fA-F]{2}", byte):
                    raise DataFileError(path, line, f"expected hex bytes, got {byte!r}")
                mem.append(int(byte, 16))
        fields["mem"] = bytes(mem)
    if "result" in by_name:
        body = _body(by_name["result"])
        if len(body) != 1:
            raise DataFileError(path, by_name["result"].line,
                                "'-- result' takes exactly one number")
        fields["result"] = _number(path, *body[0])
    for name in ("error", "error pattern"):
        if name in by_name:
            fields[name.replace(" ", "_")] = "\n".join(
                line.strip() for line in by_name[name].lines if line.strip())
    if "c" in by_name:
        fields["c_source"] = "\n".join(by_name["c"].lines).strip("\n")
    if "no register offset" in by_name:
        fields["no_register_offset"] = " ".join(t for _, t in _body(
            by_name["no register offset"]))
    fields["reload"] = "reload" in by_name
    fields["unload"] = "unload" in by_name
    if not {"result", "error", "error pattern"} & by_name.keys():
        raise DataFileError(path, 1, "needs '-- result', '-- error' or '-- error pattern'")
    if "asm" not in by_name and "raw" not in by_name and "c" not in by_name:
        raise DataFileError(path, 1, "has no program ('-- asm', '-- raw' or '-- c')")
    return DataTest(path, **fields)  # type: ignore[arg-type]


def parse_file(path: Path) -> DataTest:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, 0, f"cannot read: {exc}") from None
    return parse_text(path, text)


# -- running -----------------------------------------------------------------------------------


class Outcome(Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class FileResult:
    name: str
    outcome: Outcome
    detail: str = ""

    def line(self) -> str:
        return f"{self.outcome.value} {self.name}" + (f": {self.detail}" if self.detail else "")


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i in range(0, min(len(a), len(b)), 8) if a[i:i + 8] != b[i:i + 8]),
                min(len(a), len(b))) // 8


def run_test(test: DataTest, run_raw: RunRaw) -> FileResult:
    """Run one parsed file; a DataFileError from assembling propagates (unusable input)."""
    code = test.program()
    if code is None:
        return FileResult(test.name, Outcome.SKIP, "only C source; no compiler harness here")
    assembled = test.assembled()
    if assembled is not None and assembled != code:
        return FileResult(test.name, Outcome.FAIL, "the asm assembles to other words than "
                          f"-- raw holds (first at slot {_first_difference(assembled, code)})")
    expected = "an error" if test.result is None else f"{test.result:#x}"
    try:
        check_program(decode(code))  # the ISA's rules hold whatever the engine checks
        got = run_raw(code, test.mem) & U64
    except VxdpError as exc:
        if test.expects_error:
            return FileResult(test.name, Outcome.PASS)
        return FileResult(test.name, Outcome.FAIL, f"expected {expected} got error: {exc}")
    if got != test.result:
        return FileResult(test.name, Outcome.FAIL, f"expected {expected} got {got:#x}")
    return FileResult(test.name, Outcome.PASS)


def data_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a directory")
    files = sorted(folder.glob("*.data"))
    if not files:
        raise UsageError(f"{folder}: no .data files")
    return files


def run_files(paths: Iterable[Path], run_raw: RunRaw) -> Iterator[FileResult]:
    """Parse and run each file in turn (parse errors raise DataFileError)."""
    for path in paths:
        yield run_test(parse_file(path), run_raw)


def summary(results: Iterable[FileResult]) -> str:
    """`N passed, M failed` and `, K skipped` when any were."""
    counts = {o: 0 for o in Outcome}
    for r in results:
        counts[r.outcome] += 1
    text = f"{counts[Outcome.PASS]} passed, {counts[Outcome.FAIL]} failed"
    if counts[Outcome.SKIP]:
        text += f", {counts[Outcome.SKIP]} skipped"
    return text
