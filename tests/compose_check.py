"""tests/compose_check.py - the static checks of the Docker path, offline.

tests/compose.sh runs this with docker-compose's own Python (it has the YAML
parser) once `docker-compose config` has resolved docker-compose.yml, with a
known dummy JWT_SECRET, into RESOLVED:

    python3 tests/compose_check.py RESOLVED DUMMY_SECRET

No image can be built here (there is no Docker engine), so everything a
build would find out is checked from the files instead:

  compose    every service names a profile; each profile has the services
             its phase needs and publishes only its entry points; a
             service depends only on services of its own profiles; the
             Phase 3 gateways trust nginx's fixed address; every bind
             mount exists; every build is the root Dockerfile with a
             target it has; JWT_SECRET reaches exactly the programs that
             sign or verify tokens; in each profile every process that
             traces has the same tracing settings, and they name a host
             of that profile (or say off).
  Dockerfile it is the only one; its six program targets exist, each used
             by compose, each copying and running its own program from the
             one build stage; the build stage installs the build packages
             of scripts/deps.sh and builds all six; the runtime stage
             installs packages that exist in Debian 12 and provide every
             library the built programs (build/bin) load, runs as a
             non-root user and has a HEALTHCHECK; every COPY source exists
             and passes .dockerignore, which keeps .env out.
  compile    the build stage's inputs suffice: the files its COPY lines
             take from the build context (the working tree minus
             .dockerignore) are copied to a scratch directory and its
             `make` line is run there.

Each finding is one line, "ok <what>" or "not ok <what>: <why>", which
tests/compose.sh turns into checks. Run from the repository root.
"""
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

# The kit's seven programs (each a Dockerfile target): the program's main.c,
# and the directories of the service code it runs, to read what it needs.
PROGRAMS = {
    "monolith": ("phase1-monolith/main.c", ["services"]),
    "gateway": ("phase2-gateway/main.c", []),
    "gateway-advanced": ("phase3-advanced/main.c", []),
    "users": ("services/users/main.c", ["services/users"]),
    "url-shortener": ("services/url-shortener/main.c", ["services/url-shortener"]),
    "analytics": ("services/analytics/main.c", ["services/analytics"]),
    "notifications": ("services/notifications/main.c", ["services/notifications"]),
}
PHASES = {
    "phase1": {"redis", "monolith"},
    "phase2": {"redis", "users", "url-shortener", "analytics", "notifications", "gateway",
               "prometheus-phase2"},
    "phase3": {"redis", "phase3-users", "phase3-analytics", "phase3-notifications",
               "url-shortener-v1", "url-shortener-v1-b",
               "url-shortener-v2", "url-shortener-v2-canary", "api-gateway-1",
               "api-gateway-2", "api-gateway-3", "nginx", "jaeger", "prometheus-phase3"},
}
PUBLISHED = {"phase1": {"monolith"}, "phase2": {"gateway", "prometheus-phase2"},
             "phase3": {"nginx", "jaeger", "prometheus-phase3"}}
TRACING_VARIABLES = ("TRACE_SAMPLER", "TRACE_SAMPLER_PARAM", "TRACE_REPORTER",
                     "JAEGER_AGENT_HOST", "JAEGER_AGENT_PORT", "JAEGER_COLLECTOR_URL")


def report(ok, what, why=""):
    print(("ok " if ok else "not ok ") + what + ("" if ok else ": " + why))


def sources_of(program):
    """The text of a program's C sources (PROGRAMS), concatenated."""
    main_c, directories = PROGRAMS[program]
    paths = {main_c} | {os.path.join(d, f) for top in directories
                        for d, _, fs in os.walk(top) for f in fs if f.endswith(".c")}
    text = []
    for path in sorted(paths):
        with open(path) as f:
            text.append(f.read())
    return "\n".join(text)


def uses_jwt(program):
    """Verifies tokens (the auth middleware) or issues them (users)."""
    return bool(re.search(r"&kit_auth_jwt\b|\bkit_jwt_config_from_env\s*\(", sources_of(program)))


def traces(program):
    """Its main.c puts the tracing middleware in the chain."""
    with open(PROGRAMS[program][0]) as f:
        return re.search(r"kit_use\(\s*app\s*,\s*&kit_tracing\s*\)", f.read()) is not None


# --- the Dockerfile, read the way docker does --------------------------------

def dockerfile_instructions(path):
    """(KEYWORD, arguments) per instruction: comment lines dropped, lines
    ending in a backslash joined with the next."""
    instructions, pending = [], ""
    with open(path) as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("#") or (not stripped and not pending):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            whole = (pending + stripped).strip()
            pending = ""
            if whole:
                keyword, _, arguments = whole.partition(" ")
                instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def stages_of(instructions):
    """The stages in order: {name, base, steps: [(KEYWORD, arguments)]}."""
    stages = []
    for keyword, arguments in instructions:
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append({"name": name, "base": words[0], "steps": []})
        elif stages:
            stages[-1]["steps"].append((keyword, arguments))
    return stages


def steps(stage, keyword):
    """The arguments of each KEYWORD instruction of the stage, in order."""
    return [arguments for k, arguments in stage["steps"] if k == keyword]


def apt_packages(stage):
    """Every package an `apt-get install` in the stage names."""
    packages = []
    for arguments in steps(stage, "RUN"):
        for command in re.split(r"&&|;", arguments):
            words = command.split()
            if "apt-get" in words and "install" in words:
                packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return packages


def copies(stage):
    """(sources, destination, from_stage) for each COPY of the stage."""
    result = []
    for arguments in steps(stage, "COPY"):
        words = shlex.split(arguments)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        result.append((paths[:-1], paths[-1], source_stage))
    return result


def ignored(path, patterns):
    """Whether .dockerignore keeps PATH (relative, '/'-separated) out of the
    build context: as docker does, a pattern is matched a path component at
    a time (so * does not cross a /), a pattern matching a directory keeps
    out everything under it, and the last matching pattern wins (! lets a
    path back in)."""
    parts = path.split("/")
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pieces = pattern.lstrip("!").strip("/").split("/")
        if len(pieces) <= len(parts) and all(
                fnmatch.fnmatchcase(part, piece) for part, piece in zip(parts, pieces)):
            verdict = not negate
    return verdict


def dockerignore_patterns():
    with open(".dockerignore") as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


def deps_build_packages():
    """What scripts/deps.sh installs to compile the kit (its build set):
    the toolchain, pkg-config and the -dev libraries; not the programs that
    only run it (redis-server, curl, ...), which the images do not need."""
    names = subprocess.run(["bash", "scripts/deps.sh", "--list", "build"],
                           stdout=subprocess.PIPE, check=True, text=True).stdout.split()
    return {n for n in names if n in ("gcc", "libc6-dev", "make", "pkg-config")
            or n.endswith("-dev")}


def run(command, **kwargs):
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kwargs)


def needed_packages(binary):
    """The Debian packages that hold the shared libraries BINARY loads
    directly (readelf's NEEDED entries, found where ldd finds them, owned
    per dpkg -S). Returns (packages, problems)."""
    needed = re.findall(r"Shared library: \[(.+?)\]", run(["readelf", "-d", binary]).stdout)
    where = dict(re.findall(r"^\s*(\S+) => (/\S+)", run(["ldd", binary]).stdout, re.M))
    packages, problems = set(), []
    for soname in needed:
        path = where.get(soname)
        if path is None:
            problems.append(f"ldd does not find {soname}")
            continue
        owner = None
        # Debian 12 has merged /usr: dpkg may know the file under either name.
        for candidate in (path, os.path.realpath(path), "/usr" + path, path.replace("/usr/", "/", 1)):
            answer = run(["dpkg", "-S", candidate])
            if answer.returncode == 0:
                owner = answer.stdout.split(":")[0]
                break
        if owner is None:
            problems.append(f"no package owns {path}")
        else:
            packages.add(owner)
    return packages, problems


def check_compose(services, dummy_secret, targets):
    for name, service in sorted(services.items()):
        report(bool(service.get("profiles")), f"service {name} names a profile", "it has no profiles")
        for volume in service.get("volumes", []):
            # Bind mounts resolve to absolute paths; named volumes do not.
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith("/"):
                report(os.path.exists(source), f"service {name} mounts an existing {os.path.basename(source)}",
                       f"{source} does not exist")
        build = service.get("build")
        if build:
            dockerfile = os.path.relpath(os.path.join(build["context"], build.get("dockerfile", "Dockerfile")))
            report(dockerfile == "Dockerfile", f"service {name} builds from the root Dockerfile",
                   f"it builds {dockerfile}")
            report(build.get("target") in targets, f"service {name} builds a target of the Dockerfile",
                   f"target '{build.get('target')}' is not one of {', '.join(sorted(targets))}")

    for phase, wanted in PHASES.items():
        members = {n for n, s in services.items() if phase in s.get("profiles", [])}
        report(members == wanted, f"profile {phase} is {', '.join(sorted(wanted))}",
               f"it is {', '.join(sorted(members))}")
        with_ports = {n for n in members if n != "redis" and services[n].get("ports")}
        report(with_ports == PUBLISHED[phase],
               f"in {phase} only {', '.join(sorted(PUBLISHED[phase]))} publishes a port",
               f"these do: {', '.join(sorted(with_ports))}")
        outside = sorted(f"{n} -> {d}" for n in members for d in (services[n].get("depends_on") or {})
                         if d not in members)
        report(not outside, f"in {phase} every service depends only on services of {phase}",
               "; ".join(outside))

    # Phase 3: the gateways believe X-Forwarded-For from nginx alone, so
    # TRUSTED_PROXIES must be nginx's fixed address on the network they share.
    nginx_networks = services.get("nginx", {}).get("networks") or {}
    nginx_addresses = {(n or {}).get("ipv4_address") for n in nginx_networks.values()} - {None}
    for name in ("api-gateway-1", "api-gateway-2", "api-gateway-3"):
        environment = services.get(name, {}).get("environment") or {}
        trusted = environment.get("TRUSTED_PROXIES", "")
        report(trusted != "" and set(trusted.split(",")) <= nginx_addresses,
               f"{name} trusts nginx's address ({', '.join(sorted(nginx_addresses))})",
               f"TRUSTED_PROXIES is '{trusted}'")
        report(environment.get("INSTANCE_ID") == name, f"{name} has INSTANCE_ID={name}",
               f"it is '{environment.get('INSTANCE_ID')}'")

    # The secret goes where it is used, and nowhere else.
    kit_services = {n: s["build"]["target"] for n, s in services.items()
                    if s.get("build") and s["build"].get("target") in PROGRAMS}
    for name, program in sorted(kit_services.items()):
        secret = (services[name].get("environment") or {}).get("JWT_SECRET")
        if uses_jwt(program):
            report(secret == dummy_secret, f"service {name} ({program}, signs or verifies tokens) gets JWT_SECRET",
                   f"JWT_SECRET is {secret!r}, not the one compose was given")
        else:
            report(secret is None, f"service {name} ({program}, trusts the gateway) does not get JWT_SECRET",
                   "it has one: only the programs that sign or verify tokens need it")

    # The operator's token reaches the processes that serve /health/details
    # to clients: the monolith and the gateways (the services' own reports
    # are behind the gateway, not needed by an operator from outside).
    for name, program in sorted(kit_services.items()):
        environment = services[name].get("environment") or {}
        if program in ("monolith", "gateway", "gateway-advanced"):
            report("OPERATOR_TOKEN" in environment,
                   f"service {name} ({program}) gets OPERATOR_TOKEN from .env",
                   "it has none: /health/details would be off")

    # Prometheus: each profile's config scrapes every kit process of that
    # profile, by its compose name and the port it listens on.
    for phase in ("phase2", "phase3"):
        with open(f"monitoring/prometheus-{phase}.yml") as f:
            prom = yaml.safe_load(f)
        scraped = {t for job in prom["scrape_configs"] for sc in job["static_configs"]
                   for t in sc["targets"]}
        wanted = set()
        for name, program in kit_services.items():
            if phase in services[name].get("profiles", []):
                port = (services[name].get("environment") or {}).get("PORT")
                wanted.add(f"{name}:{port}")
        report(scraped == wanted, f"prometheus-{phase} scrapes every kit process of {phase}",
               f"it scrapes {sorted(scraped)}, the profile has {sorted(wanted)}")
        volumes = services[f"prometheus-{phase}"].get("volumes") or []
        report(any("monitoring/rules.yml" in str(v) for v in volumes),
               f"prometheus-{phase} loads monitoring/rules.yml", f"volumes: {volumes}")

    # Tracing: one set of settings per profile, pointing inside the profile.
    for phase in PHASES:
        settings = {}
        for name, program in kit_services.items():
            if phase in services[name].get("profiles", []) and traces(program):
                environment = services[name].get("environment") or {}
                settings[name] = tuple(environment.get(v) for v in TRACING_VARIABLES)
        if not settings:
            continue
        distinct = set(settings.values())
        report(len(distinct) == 1, f"in {phase} every tracing process ({len(settings)}) has the same tracing settings",
               "; ".join(f"{n}: {dict(zip(TRACING_VARIABLES, v))}" for n, v in sorted(settings.items())))
        values = dict(zip(TRACING_VARIABLES, next(iter(distinct))))
        sampler = values["TRACE_SAMPLER"] or "off"
        if sampler == "off":
            dangling = {k: v for k, v in values.items() if k != "TRACE_SAMPLER" and v}
            report(not dangling, f"in {phase} tracing is off and names no Jaeger", f"it sets {dangling}")
        else:
            if (values["TRACE_REPORTER"] or "udp-binary") == "http":
                host = re.sub(r"^\w+://([^:/]+).*", r"\1", values["JAEGER_COLLECTOR_URL"] or "127.0.0.1")
            else:
                host = values["JAEGER_AGENT_HOST"] or "127.0.0.1"
            members = {n for n, s in services.items() if phase in s.get("profiles", [])}
            report(host in members, f"in {phase} spans go to a service of {phase} ({host})",
                   f"'{host}' is not a service of {phase}")


def check_dockerfile(services, stages):
    by_name = {s["name"]: s for s in stages}
    others = sorted(os.path.join(d, f)[2:] for d, dirs, fs in os.walk(".")
                    if not d.startswith(("./.git", "./build", "./.run")) and "node_modules" not in d
                    for f in fs if f.startswith("Dockerfile") or f.endswith(".Dockerfile"))
    report(others == ["Dockerfile"], "the root Dockerfile is the only Dockerfile", f"found {others}")

    targets_used = {s["build"].get("target") for s in services.values() if s.get("build")}
    build = by_name.get("build")
    runtime = by_name.get("runtime")
    report(build is not None and runtime is not None, "the Dockerfile has a build and a runtime stage",
           f"its stages are {[s['name'] for s in stages]}")
    if build is None or runtime is None:
        return
    externals = {s["base"] for s in stages if s["base"] not in by_name}
    report(externals == {"debian:12-slim"}, "every stage starts from debian:12-slim (Debian 12 package names)",
           f"bases: {sorted(externals)}")

    make_lines = [a for a in steps(build, "RUN") if re.match(r"make\b", a)]
    for program in PROGRAMS:
        stage = by_name.get(program)
        report(stage is not None, f"the Dockerfile has a target {program}", "no such stage")
        if stage is None:
            continue
        report(program in targets_used, f"target {program} is built by a compose service", "no service names it")
        report(stage["base"] == "runtime", f"target {program} starts from the runtime stage", f"FROM {stage['base']}")
        binary = f"/src/build/bin/{program}"
        report(any(src == [binary] and frm == "build" for src, _, frm in copies(stage)),
               f"target {program} copies {binary} from the build stage", "no such COPY --from=build")
        command = steps(stage, "CMD")
        report(bool(command) and f"/usr/local/bin/{program}\"" in command[-1],
               f"target {program} runs /usr/local/bin/{program}", f"CMD is {command}")
        report(any(re.search(r"\bPORT=\d+", a) for a in steps(stage, "ENV")),
               f"target {program} sets its PORT", "no ENV PORT=")
        report(any(re.search(rf"\bbuild/bin/{re.escape(program)}(\s|$)", line) for line in make_lines),
               f"the build stage's make builds build/bin/{program}", f"make lines: {make_lines}")

    missing = sorted(deps_build_packages() - set(apt_packages(build)))
    report(not missing, "the build stage installs the build packages of scripts/deps.sh",
           f"missing: {', '.join(missing)}")
    users = steps(runtime, "USER")
    report(bool(users) and users[-1] not in ("root", "0"), "the runtime stage runs as a non-root user",
           f"USER is {users or 'not set'}")
    report(bool(steps(runtime, "HEALTHCHECK")), "the runtime stage has a HEALTHCHECK",
           "none")
    for stage in stages:
        later_root = [a for a in steps(stage, "USER") if a in ("root", "0")]
        if stage["name"] in PROGRAMS:
            report(not later_root, f"target {stage['name']} does not switch back to root", f"USER {later_root}")

    # Every package exists in this machine's Debian 12 archive.
    with open("/etc/debian_version") as f:
        release = f.read().strip()
    report(release.startswith("12"), "this machine is Debian 12 (its apt knows the images' packages)",
           f"/etc/debian_version is {release}: the package checks below ask the wrong archive")
    for stage in (build, runtime):
        for package in apt_packages(stage):
            answer = run(["apt-cache", "show", "--no-all-versions", package])
            report(answer.returncode == 0 and "Package: " in answer.stdout,
                   f"{stage['name']} stage: package {package} exists in Debian 12",
                   answer.stdout.strip()[:200] or "apt-cache show found nothing")
    # ... and the runtime stage's provide what the programs load (libc6 is
    # in every Debian image: it is Essential).
    installed = set(apt_packages(runtime)) | {"libc6"}
    for program in PROGRAMS:
        binary = f"build/bin/{program}"
        if not os.access(binary, os.X_OK):
            report(False, f"the runtime stage has the libraries {program} loads", f"{binary} is not built (make)")
            continue
        packages, problems = needed_packages(binary)
        missing = sorted(packages - installed)
        why = problems + ([f"missing: {', '.join(missing)}"] if missing else [])
        report(not why, f"the runtime stage has the libraries {program} loads", "; ".join(why))

    # COPY sources from the build context: present, and let through.
    patterns = dockerignore_patterns()
    report(ignored(".env", patterns), ".dockerignore keeps .env (the JWT secret) out of the build context",
           "it does not")
    for stage in stages:
        for sources, _, source_stage in copies(stage):
            if source_stage is not None:
                continue
            for source in sources:
                path = os.path.normpath(source)
                report(os.path.exists(path) and not ignored(path, patterns),
                       f"stage {stage['name']}: COPY {source} is in the build context",
                       "it does not exist" if not os.path.exists(path) else ".dockerignore keeps it out")


def context_files(patterns):
    """The build context: the working tree's files, minus .dockerignore."""
    for directory, dirs, files in os.walk("."):
        dirs[:] = [d for d in dirs if not ignored(os.path.relpath(os.path.join(directory, d)), patterns)]
        for f in files:
            path = os.path.relpath(os.path.join(directory, f))
            if not ignored(path, patterns):
                yield path


def check_compile(stages):
    """Copy what the build stage's COPY lines take from the context into a
    scratch directory (its WORKDIR), run its make line there."""
    build = next((s for s in stages if s["name"] == "build"), None)
    make_lines = [a for a in steps(build, "RUN") if re.match(r"make\b", a)] if build else []
    if not make_lines:
        report(False, "the build stage compiles from what it copies", "no build stage with a make line")
        return
    files = set(context_files(dockerignore_patterns()))
    with tempfile.TemporaryDirectory(prefix="kit-docker-build.") as scratch:
        for sources, destination, source_stage in copies(build):
            for source in sources:
                source = os.path.normpath(source)
                for path in sorted(f for f in files if f == source or f.startswith(source + "/")):
                    if path == source:  # a file: into the directory, or as the name given
                        target = os.path.join(destination, os.path.basename(path)) \
                            if destination.endswith("/") else destination
                    else:  # a directory's contents: into the destination
                        target = os.path.join(destination, os.path.relpath(path, source))
                    target = os.path.join(scratch, os.path.normpath(target))
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy2(path, target)
        # -j2, not the Dockerfile's $(nproc): this machine is shared.
        command = re.sub(r'-j"?\$\(nproc\)"?', "-j2", make_lines[-1])
        answer = run(["bash", "-c", command], cwd=scratch)
        tail = " | ".join(answer.stdout.strip().splitlines()[-4:])
        report(answer.returncode == 0, "the build stage compiles the six programs from what it copies",
               f"`{command}` failed: {tail}")


def main():
    resolved, dummy_secret = sys.argv[1], sys.argv[2]
    with open(resolved) as f:
        services = yaml.safe_load(f)["services"]
    stages = stages_of(dockerfile_instructions("Dockerfile"))
    check_compose(services, dummy_secret, {s["name"] for s in stages})
    check_dockerfile(services, stages)
    check_compile(stages)


if __name__ == "__main__":
    main()
