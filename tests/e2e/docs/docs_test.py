#!/usr/bin/env python3
"""The docs test: every command line shown in README.md and docs/*.md is run here, or is listed in
covered.txt with the test or CI step that runs it, so the docs cannot drift from the code.

    docs_test.py HYPERSCALE_EXE SOURCE_ROOT BUILD_ROOT [--list]

What counts as a command line (see extract()):
  - every line of a fenced ```sh / ```bash block (a line there that is not a command is an error);
  - a line of an untagged ``` block whose program is a known command (other lines are output);
  - an inline `code span` whose program is `hyperscale`, `meson`, `ninja`, `perf`, or a path under
    tools/, build*/ or ./ (after `$ ` and VAR=value prefixes).
Each one is then
  - a *mention* (`hyperscale`, `hyperscale run`, `tools/bench/`): the subcommand or path must exist;
  - a *synopsis* (placeholders such as FILE, [--flag], A|B, <x>, ...): the subcommand must exist and
    every option it shows must be in that subcommand's --help;
  - a *command*: it must be run by this test (a ```sh block right after `<!-- docs-test: run -->`
    runs verbatim as a bash script; RUNNERS below run single commands) or be listed in covered.txt.
    Entries of covered.txt that no longer appear in the docs are errors too.
Commands run in a sandbox directory holding a copy of examples/ and tools/, with `hyperscale` on
PATH and build*/hyperscale pointing at HYPERSCALE_EXE, inside a private network namespace (and PID
namespace: everything started dies with the test) so the documented fixed ports are free.
"""
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN_MARK = "<!-- docs-test: run -->"
SCRIPT_LANGS = {"sh", "bash", "shell"}  # every line is a command
SHELL_LANGS = SCRIPT_LANGS | {""}  # untagged blocks: command lines are picked, the rest is output
# Programs recognised at the start of a fenced line.
FENCED_PROGRAMS = {
    "hyperscale", "meson", "ninja", "perf", "curl", "python3", "mkdir", "cd", "export", "head", "kill",
    "wait", "cat", "cp", "rm", "chmod", "echo", "printf", "timeout", "ip", "unshare", "sudo",
}
# Programs recognised in inline code spans (prose words like `wait` or `kill` are left alone).
INLINE_PROGRAMS = {"hyperscale", "meson", "ninja", "perf"}
PATH_PROGRAM = re.compile(r"^(tools/|build[\w.-]*/|\./)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Options a command accepts but its --help does not show (hidden on purpose).
HIDDEN_OPTIONS = {("run", "--direct")}  # A/B benchmark switch (docs/load.md)
PLACEHOLDER_TOKEN = re.compile(r"^[A-Z][A-Z_]*(:[A-Z_]+)?$")


class Cmd:
    def __init__(self, file, line, text, block=None):
        self.file, self.line, self.text, self.block = file, line, text, block
        self.words = split(text)
        self.prog_index = next((i for i, w in enumerate(self.words) if not ASSIGNMENT.match(w)), None)

    @property
    def where(self):
        return f"{self.file}:{self.line}"

    @property
    def prog(self):
        return None if self.prog_index is None else self.words[self.prog_index]

    @property
    def args(self):
        return [] if self.prog_index is None else self.words[self.prog_index + 1:]


def split(text):
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def strip_comment(line):
    """Drops a trailing `# comment` (a # at a word start, outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def normalise(text):
    return " ".join(text.split())


def program_of(text, programs):
    words = split(text)
    prog = next((w for w in words if not ASSIGNMENT.match(w)), None)
    if prog is None:
        return None
    return prog if (prog in programs or PATH_PROGRAM.match(prog)) else None


def doc_files(src):
    return [src / "README.md"] + sorted((src / "docs").glob("*.md"))


def extract(src):
    """Returns (commands, errors, run_blocks): run_blocks maps a block id to its script text."""
    cmds, errors, run_blocks = [], [], {}
    for path in doc_files(src):
        rel = str(path.relative_to(src))
        lines = path.read_text().splitlines()
        fence, lang, block_id, block_lines, marked, prev = None, "", None, [], False, ""
        pending = ""
        for no, raw in enumerate(lines, 1):
            stripped = raw.strip()
            if fence is None:
                m = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
                if m:
                    fence, lang = m.group(1), m.group(2).lower()
                    block_id = f"{rel}:{no}"
                    marked = prev.strip() == RUN_MARK
                    block_lines = []
                    if marked and lang not in SCRIPT_LANGS:
                        errors.append(f"{block_id}: {RUN_MARK} must precede a ```sh block")
                    continue
                prev = raw if stripped else prev
                for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", raw):
                    span = span.strip()
                    if span.startswith("$ "):
                        span = span[2:]
                    if program_of(span, INLINE_PROGRAMS):
                        cmds.append(Cmd(rel, no, normalise(span)))
                continue
            if stripped.startswith(fence):
                if marked:
                    run_blocks[block_id] = "\n".join(block_lines) + "\n"
                fence, prev = None, ""
                continue
            block_lines.append(raw)
            if lang not in SHELL_LANGS:
                continue
            text = pending + strip_comment(raw.strip())
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            if text.startswith("$ "):
                text = text[2:]
            if not text:
                continue
            if program_of(text, FENCED_PROGRAMS):
                cmds.append(Cmd(rel, no, normalise(text), block_id))
            elif lang in SCRIPT_LANGS:
                errors.append(f"{rel}:{no}: line of a ```{lang} block is not a recognised command: {text!r} "
                              f"(add its program to FENCED_PROGRAMS in {Path(__file__).name}, or use an untagged "
                              f"block for output)")
        if fence is not None:
            errors.append(f"{rel}: unterminated code block opened at {block_id}")
    return cmds, errors, run_blocks


def is_placeholder(word):
    if word in ("|", "||", "&&"):  # shell operators
        return False
    return (PLACEHOLDER_TOKEN.match(word) is not None or any(s in word for s in ("[", "]", "…", "...", "|"))
            or re.search(r"<[^>]*>", word) is not None)


def classify(cmd):
    words = cmd.words
    if any(is_placeholder(w.split("=", 1)[1] if ASSIGNMENT.match(w) else w) for w in words):
        return "synopsis"
    prog, args = cmd.prog, cmd.args
    if prog.endswith("/"):
        return "mention"
    if (prog == "hyperscale" or prog.endswith("/hyperscale")) and all(re.match(r"^[a-z][a-z-]*$", a) for a in args):
        # `hyperscale`, `hyperscale run`, `hyperscale wal repair`: names, not invocations
        return "mention"
    return "command"


# ---------------------------------------------------------------- the covered.txt manifest

def load_manifest(path):
    """covered.txt: `COMMAND => WHO: why`, WHO a path in the repository (the test or CI step that runs
    the command), or `bench` (a benchmark: not a test; checked to exist and be executable), or
    `opt-in` (deliberately not run by CI; the text says why)."""
    entries, errors = {}, []
    for no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if " => " not in line:
            errors.append(f"{path.name}:{no}: expected `COMMAND => WHO: why`")
            continue
        cmd, how = line.split(" => ", 1)
        who = how.split(":", 1)[0].strip()
        if ":" not in how or not how.split(":", 1)[1].strip():
            errors.append(f"{path.name}:{no}: `{how}`: expected `WHO: why`")
        entries[normalise(cmd)] = (no, who, how.strip())
    return entries, errors


# ---------------------------------------------------------------- static checks

class Checker:
    def __init__(self, hs, src, build):
        self.hs, self.src, self.build = hs, src, build
        self._help = {}
        self._suites = None

    def help(self, path):
        key = tuple(path)
        if key not in self._help:
            r = subprocess.run([self.hs, *path, "--help"], capture_output=True, text=True, timeout=30)
            self._help[key] = r.stdout if r.returncode == 0 else None
        return self._help[key]

    def subcommands(self, args):
        """The longest prefix of args that is a subcommand path of hyperscale, and the rest."""
        path = []
        for a in args:
            if not re.match(r"^[a-z][a-z-]*$", a):
                break
            h = self.help(path) or ""
            # CLI11 lists subcommands after "Subcommands:", one indented name per line
            names = set(re.findall(r"(?m)^  ([a-z][\w-]*)(?:\s|$)", h.split("Subcommands:", 1)[1])) if "Subcommands:" in h else set()
            if a not in names:
                break
            path.append(a)
        return path, args[len(path):]

    def suites(self):
        if self._suites is None:
            r = subprocess.run(["meson", "introspect", "--tests", str(self.build)], capture_output=True, text=True,
                               timeout=60)
            tests = json.loads(r.stdout) if r.returncode == 0 else []
            self._suites = {s.split(":")[-1] for t in tests for s in t.get("suite", [])}
        return self._suites

    def check(self, cmd, kind):
        """Static checks every command, synopsis and mention gets. Returns a list of problems."""
        problems, prog, args = [], cmd.prog, cmd.args
        if prog == "hyperscale" or prog.endswith("/hyperscale"):
            # the leading plain words are the subcommand path (`a|b` = alternatives); options follow
            lead = []
            for a in args:
                if not re.match(r"^[a-z][a-z|-]*$", a):
                    break
                lead.append(a)
            alts = lead[0].split("|") if lead and "|" in lead[0] else [None]
            for alt in alts:
                path, rest = self.subcommands(([alt] + lead[1:]) if alt else lead)
                if rest and kind != "command":
                    problems.append(f"`{' '.join(rest)}` is not a subcommand of `hyperscale {' '.join(path)}`")
                    continue
                h = self.help(path) or ""
                for opt in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", " ".join(args)):
                    if (tuple(path) + (opt,)) not in HIDDEN_OPTIONS and not re.search(
                            rf"(?<![\w-]){re.escape(opt)}(?![\w-])", h):
                        problems.append(f"option {opt} is not in `hyperscale {' '.join(path)} --help`")
        elif prog.startswith("tools/"):
            p = self.src / prog
            if prog.endswith("/"):
                if not p.is_dir():
                    problems.append(f"{prog}: no such directory")
            elif not p.is_file() or not os.access(p, os.X_OK):
                problems.append(f"{prog}: no such executable file")
            elif p.read_text(errors="replace").startswith("#!/usr/bin/env bash"):
                r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
                if r.returncode != 0:
                    problems.append(f"{prog}: bash -n: {r.stderr.strip()}")
        elif PATH_PROGRAM.match(prog) and prog.startswith("build"):
            rel = prog.split("/", 1)[1]
            if rel.startswith("tests/fuzz/"):
                mb = self.src / Path(rel).parent / "meson.build"
                if not mb.is_file() or f"'{Path(rel).name}'" not in mb.read_text():
                    problems.append(f"{prog}: no fuzz target {Path(rel).name} in {mb.relative_to(self.src)}")
            elif not (self.build / rel).is_file():
                problems.append(f"{prog}: {rel} is not built in {self.build} (not a target any more?)")
            elif rel.startswith("tests/") and kind == "command":
                filters = [a for a in args if not a.startswith("-")]
                if filters:  # Catch2 test-name filter: something must match
                    r = subprocess.run([str(self.build / rel), *filters, "--list-test-names-only"],
                                       capture_output=True, text=True, timeout=60)
                    if not r.stdout.strip():
                        problems.append(f"{prog}: no test case matches {' '.join(filters)}")
        elif prog == "meson" and args[:1] == ["test"] and "--suite" in args:
            i = args.index("--suite")
            suite = args[i + 1] if i + 1 < len(args) else ""
            if suite not in self.suites():
                problems.append(f"meson test suite `{suite}` does not exist in {self.build}")
        elif prog == "ninja" and "-C" in args:
            for t in args[args.index("-C") + 2:]:
                mb = self.src / Path(t).parent / "meson.build"
                if "/" in t and (not mb.is_file() or f"'{Path(t).name}'" not in mb.read_text()):
                    problems.append(f"ninja target {t}: not defined in {Path(t).parent}/meson.build")
        return problems


# ---------------------------------------------------------------- running commands

class Sandbox:
    def __init__(self, hs, src):
        self.dir = Path(tempfile.mkdtemp(prefix="hs-docs-test."))
        self.hs, self.src = hs, src
        for d in ("examples", "tools"):
            shutil.copytree(src / d, self.dir / d, symlinks=True)
        for b in ("build", "build-release", "build-asan"):
            (self.dir / b).mkdir()
            (self.dir / b / "hyperscale").symlink_to(hs)
        self.bin = self.dir / ".bin"
        self.bin.mkdir()
        (self.bin / "hyperscale").symlink_to(hs)
        self.env = dict(os.environ, PATH=f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        for k in [k for k in self.env if k.startswith("HS_") or k == "DOCS_TEST_IN_NAMESPACE"]:
            del self.env[k]  # an unknown HS_* variable is a config error for the daemons

    def popen(self, argv_or_script, log, cwd=None, env=None, shell=False):
        argv = ["bash", "-euo", "pipefail", "-c", argv_or_script] if shell else argv_or_script
        with open(self.dir / log, "wb") as out:
            return subprocess.Popen(argv, cwd=cwd or self.dir, env=env or self.env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def log(self, name, tail=60):
        p = self.dir / name
        return "\n".join(p.read_text(errors="replace").splitlines()[-tail:]) if p.exists() else "(no output)"


def group_alive(pgid):
    """Whether a process of group pgid is still running (zombies do not count: they hold no port)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(p, sig=signal.SIGKILL, timeout=10.0):
    """Signals p's process group, waits for p, then makes sure nothing of the group is left."""
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        rc = p.wait()
    if group_alive(p.pid):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(lambda: not group_alive(p.pid), 10, f"process group {p.pid} gone")
    return rc


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def run_block(sb, block_id, script, timeout=240):
    name = "block-" + re.sub(r"\W", "_", block_id) + ".log"
    p = sb.popen(script, name, shell=True)
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = f"timeout ({timeout}s)"
    stop_group(p)
    if rc != 0:
        extra = "".join(f"\n----- {f.relative_to(sb.dir)}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-30:])
                        for f in sorted(sb.dir.glob("examples/**/*.log")))
        raise RuntimeError(f"exit {rc}; output:\n{sb.log(name)}{extra}")


def run_simple(sb, text, timeout=120, env=None, expect=0, cwd=None):
    name = "cmd-" + re.sub(r"\W", "_", text)[:60] + ".log"
    p = sb.popen(text, name, shell=True, env=env, cwd=cwd)
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = f"timeout ({timeout}s)"
    stop_group(p)
    if rc != expect:
        raise RuntimeError(f"exit {rc} (want {expect}); output:\n{sb.log(name)}")
    return (sb.dir / name).read_text(errors="replace")


class Daemon:
    """A documented long-running command: started, waited on until ready, stopped with SIGINT."""

    def __init__(self, sb, text, ready, what):
        self.sb, self.text = sb, text
        self.log = "daemon-" + re.sub(r"\W", "_", text)[:60] + ".log"
        self.p = sb.popen(text, self.log, shell=True)
        def up():
            if self.p.poll() is not None:
                raise RuntimeError(f"exited {self.p.returncode} before {what}; output:\n{sb.log(self.log)}")
            return ready(self)
        wait_for(up, 60, what)

    def output(self):
        return (self.sb.dir / self.log).read_text(errors="replace")

    def stop(self, want_in_output):
        os.killpg(self.p.pid, signal.SIGINT)
        try:
            rc = self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = "no exit 20 s after SIGINT"
        stop_group(self.p)
        if rc != 0 or want_in_output not in self.output():
            raise RuntimeError(f"after SIGINT: exit {rc}, want 0 and `{want_in_output}`; output:\n{self.sb.log(self.log)}")


def run_load(sb, text, env=None):
    """A load run: exit 0, or 3 when only thresholds failed (latency thresholds depend on how loaded the
    machine is; the command itself worked: it ran every workflow and wrote its results)."""
    name = "cmd-" + re.sub(r"\W", "_", text)[:60] + ".log"
    p = sb.popen(text, name, shell=True, env=env)
    try:
        rc = p.wait(timeout=180)
    except subprocess.TimeoutExpired:
        rc = "timeout (180s)"
    stop_group(p)
    out = (sb.dir / name).read_text(errors="replace")
    thresholds_only = rc == 3 and re.search(r"FAIL, \d+ threshold\(s\) failed", out) and "results: " in out
    if rc != 0 and not thresholds_only:
        raise RuntimeError(f"exit {rc} (want 0, or 3 for thresholds only); output:\n{sb.log(name)}")
    if rc == 3:
        print(f"     (`{text}`: thresholds failed on this machine: tolerated)")


def runners(sb, state):
    """Single documented commands this test runs, in this order (None: a step of the test, not a docs
    command). Each raises on failure."""

    def version():
        out = run_simple(sb, "hyperscale --version")
        if not out.startswith("hyperscale "):
            raise RuntimeError(f"unexpected output {out!r}")

    def target_http():  # docs/cli.md: `hyperscale new` writes a template for `hyperscale target --http 8080`
        state["target"] = Daemon(sb, "hyperscale target --http 8080", lambda d: port_open(8080), "the target on :8080")

    def new_my():
        run_simple(sb, "build-release/hyperscale new my.toml")
        if not (sb.dir / "my.toml").is_file():
            raise RuntimeError("my.toml was not written")

    def run_my():
        run_load(sb, "build-release/hyperscale run my.toml")

    def stop_target():
        state.pop("target").stop("served http_requests=")

    def target_all():  # `hyperscale target` with no flags: HTTP 8080, TCP 9000, UDP 9001 (examples/quickstart.toml)
        state["target"] = Daemon(sb, "hyperscale target", lambda d: port_open(8080) and port_open(9000),
                                 "the target on :8080 and :9000")

    def run_file():  # README's example file name; the file is examples/quickstart.toml
        shutil.copy(sb.dir / "examples" / "quickstart.toml", sb.dir / "file.toml")
        run_load(sb, "hyperscale run file.toml")

    def demo():  # HYPERSCALE= skips tools/demo's own tools/setup + release build (tools/test builds it)
        run_load(sb, "tools/demo", env=dict(sb.env, HYPERSCALE=str(sb.hs)))

    def swim_agent():
        text = "hyperscale swim-agent --bind 127.0.0.1:7001 --seeds 127.0.0.1:7001,127.0.0.1:7002 --period-ms 200"
        Daemon(sb, text, lambda d: "event=agent_started" in d.output(), "event=agent_started").stop(
            "event=agent_stopped")

    return [
        ("hyperscale --version", version),
        ("hyperscale target --http 8080", target_http),
        ("build-release/hyperscale new my.toml", new_my),
        ("build-release/hyperscale run my.toml", run_my),
        (None, stop_target),
        (None, target_all),
        ("hyperscale run file.toml", run_file),
        (None, stop_target),
        ("tools/demo", demo),
        ("hyperscale swim-agent --bind 127.0.0.1:7001 --seeds 127.0.0.1:7001,127.0.0.1:7002 --period-ms 200",
         swim_agent),
    ]


# ---------------------------------------------------------------- main

def enter_namespaces(argv):
    """Re-executes this script as PID 1 of new network + PID namespaces (root only), with lo up."""
    if os.environ.get("DOCS_TEST_IN_NAMESPACE") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("docs test: needs root and unshare(1) for a private network namespace (the docs use fixed "
              "ports); skipped", file=sys.stderr)
        sys.exit(77)
    env = dict(os.environ, DOCS_TEST_IN_NAMESPACE="1")
    r = subprocess.run(["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", sys.executable, *argv], env=env)
    sys.exit(r.returncode)


def main():
    argv = sys.argv[1:]
    listing = "--list" in argv
    args = [a for a in argv if a != "--list"]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    hs, src, build = Path(args[0]).resolve(), Path(args[1]).resolve(), Path(args[2]).resolve()
    if not listing:
        enter_namespaces([str(Path(__file__).resolve()), *argv])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    cmds, errors, run_blocks = extract(src)
    manifest, merr = load_manifest(HERE / "covered.txt")
    errors += merr
    checker = Checker(str(hs), src, build)
    t0 = time.monotonic()

    # 1. classify and check every command statically; find what covers each concrete one
    run_texts = [t for t, _ in runners(None, {}) if t]
    seen_manifest, report = set(), []
    for c in cmds:
        kind = classify(c)
        how = None
        if c.block in run_blocks:
            how = f"run: the block at {c.block}"
        elif kind == "command":
            if c.text in run_texts:
                how = "run: " + c.text
            elif c.text in manifest:
                no, who, text = manifest[c.text]
                seen_manifest.add(c.text)
                if who not in ("bench", "opt-in") and not (src / who).exists():
                    errors.append(f"covered.txt:{no}: `{who}` is not a file of the repository")
                how = "covered.txt: " + text
            else:
                errors.append(f"{c.where}: `{c.text}` is neither run by this test nor listed in "
                              f"tests/e2e/docs/covered.txt (COMMAND => WHO: why)")
                how = "NOT COVERED"
        else:
            how = kind
        if not listing:
            for p in checker.check(c, kind):
                errors.append(f"{c.where}: `{c.text}`: {p}")
        report.append(f"{c.where:24} {kind:8} {c.text}\n{'':33}-> {how}")
    for text, (no, _, _) in manifest.items():
        if text not in seen_manifest:
            errors.append(f"covered.txt:{no}: `{text}` is not a concrete command of README.md or docs/*.md any more "
                          f"(remove the entry)")
    doc_texts = {c.text for c in cmds}
    for t in run_texts:
        if t not in doc_texts:
            errors.append(f"{Path(__file__).name}: runner for `{t}`, which is not in the docs any more")
    print("\n".join(report))
    print(f"docs test: {len(cmds)} command lines in {len(doc_files(src))} files; "
          f"{len(run_blocks)} block(s) and {len(run_texts)} single commands to run")
    if listing:
        for e in errors:
            print("ERROR", e)
        return 1 if errors else 0

    # 2. run them
    sb = Sandbox(hs, src)
    failed_runs = 0
    try:
        for block_id, script in run_blocks.items():
            t = time.monotonic()
            try:
                run_block(sb, block_id, script)
                print(f"ok   block {block_id} ({time.monotonic() - t:.1f} s)")
            except Exception as e:  # noqa: BLE001 -- reported below as a failure with its context
                failed_runs += 1
                errors.append(f"{block_id}: the block failed: {e}")
                print(f"FAIL block {block_id}")
        for port in (8080, 9000, 7101):
            wait_for(lambda: port_free(port), 20, f"port {port} free again")
        state = {}
        for text, fn in runners(sb, state):
            t = time.monotonic()
            try:
                fn()
                print(f"ok   {text or fn.__name__} ({time.monotonic() - t:.1f} s)")
            except Exception as e:  # noqa: BLE001 -- reported below as a failure with its context
                failed_runs += 1
                errors.append(f"`{text or fn.__name__}`: {e}")
                print(f"FAIL {text or fn.__name__}")
        for d in state.values():
            stop_group(d.p)
    finally:
        if failed_runs == 0:
            shutil.rmtree(sb.dir, ignore_errors=True)
        else:
            print(f"docs test: sandbox kept in {sb.dir}")
    print(f"docs test: {time.monotonic() - t0:.1f} s")
    for e in errors:
        print("ERROR", e, file=sys.stderr)
    print(f"docs test: {len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
