"""`workbench jobs list | show | logs | cancel | resume | wait | register | rm`: background training jobs.

Jobs are started with `workbench train ... --detach`. Everything here reads the registry, the feed the
app draws from too.
"""

from __future__ import annotations

import json
import sys

from .common import add_json_flag, command, context, emit, info, job_id_value, seconds_value, table


def register(subcommands) -> None:
    group = subcommands.add_parser("jobs", help="background training jobs (start one with `train --detach`)")
    sub = group.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)

    listing = command(sub, "list", cmd_list, "list jobs with their status and progress")
    listing.add_argument("--active", action="store_true", help="only queued and running jobs")
    add_json_flag(listing)

    show = command(sub, "show", cmd_show, "show one job: status, progress, checkpoint, error, model")
    show.add_argument("job_id", type=job_id_value)
    add_json_flag(show)

    logs = command(sub, "logs", cmd_logs, "print a job's metric rows (--follow: stream them until it ends)")
    logs.add_argument("job_id", type=job_id_value)
    logs.add_argument("--follow", "-f", action="store_true", help="keep streaming new rows until the job ends")
    logs.add_argument("--after-id", type=int, default=0, help="only rows with an id above this")
    logs.add_argument("--output", action="store_true", help="print the job process's stdout.log instead")
    add_json_flag(logs)

    cancel = command(sub, "cancel", cmd_cancel,
                     "stop a job: it saves a checkpoint and ends cancelled (again, or --force: kill it)")
    cancel.add_argument("job_id", type=job_id_value)
    cancel.add_argument("--force", action="store_true", help="kill its process group now (SIGKILL)")
    cancel.add_argument("--timeout", type=seconds_value, default=None,
                        help="wait this many seconds for it to stop, then kill it")
    add_json_flag(cancel)

    resume = command(sub, "resume", cmd_resume,
                     "continue a failed, cancelled or interrupted job from its last complete checkpoint")
    resume.add_argument("job_id", type=job_id_value)
    add_json_flag(resume)

    wait = command(sub, "wait", cmd_wait, "wait until a job ends (exit 0 only if it completed)")
    wait.add_argument("job_id", type=job_id_value)
    wait.add_argument("--timeout", type=seconds_value, default=None, help="give up after this many seconds (exit 1)")
    add_json_flag(wait)

    reg = command(sub, "register", cmd_register,
                  "register the model in a stopped job's last complete checkpoint (e.g. after a cancel)")
    reg.add_argument("job_id", type=job_id_value)
    reg.add_argument("--name", default=None, help="model name (default: <out>-step<N>)")
    add_json_flag(reg)

    rm = command(sub, "rm", cmd_rm, "delete an ended job: its checkpoints, logs and metrics (models it made stay)")
    rm.add_argument("job_id", type=job_id_value)
    add_json_flag(rm)


def _progress(job) -> str:
    return f"{job.step}/{job.total_steps}"


def render_job_line(job) -> list:
    return [job.id, job.status, job.base_model, job.out_model, job.dataset or "-", _progress(job),
            (job.created_at or "")[:16].replace("T", " ")]


def cmd_list(args) -> int:
    from ..core.jobs import list_jobs
    from ..core.registry import ACTIVE_JOB_STATUSES

    ctx = context(args, starter=False)
    jobs = list_jobs(ctx, list(ACTIVE_JOB_STATUSES) if args.active else None)
    emit(args, jobs, lambda js: table([render_job_line(j) for j in js],
                                      ["ID", "STATUS", "BASE", "OUT", "DATA", "STEP", "CREATED"])
         if js else "no jobs (start one with `workbench train ... --detach`)")
    return 0


def render_details(d: dict) -> str:
    lines = [f"job {d['id']}: {d['status']}  step {d['step']}/{d['total_steps']}",
             f"  {d['base_model']} -> {d['out_model']}" + (f" on {d['dataset']}" if d["dataset"] else "")]
    for key in ("device", "pid", "host", "created_at", "started_at", "ended_at", "last_checkpoint", "model",
                "dir"):
        if d.get(key) is not None:
            lines.append(f"  {key}: {d[key]}")
    launch = d.get("launch") or {}
    if launch.get("nproc", 1) > 1 or launch.get("nnodes", 1) > 1:
        lines.append(f"  torchrun: {launch['nproc']} process(es) x {launch['nnodes']} node(s)")
    for split, last in d["last_losses"].items():
        lines.append(f"  last {split} loss: {last['loss']:.4f} (step {last['step']})")
    if d.get("error"):
        lines.append("  error:")
        lines += [f"    {line}" for line in d["error"].splitlines()]
    if d["status"] in ("failed", "cancelled", "interrupted"):
        lines.append(f"  resume with `workbench jobs resume {d['id']}`")
        if d.get("last_checkpoint") and not d.get("model"):
            lines.append(f"  register its model so far with `workbench jobs register {d['id']}`")
    return "\n".join(lines)


def cmd_show(args) -> int:
    from ..core.jobs import job_details

    ctx = context(args, starter=False)
    emit(args, job_details(ctx, args.job_id), render_details)
    return 0


def render_metric(row) -> str:
    parts = [f"step {row.step:>6}", f"{row.split:<5}", f"loss {row.loss:.4f}"]
    if row.lr is not None:
        parts.append(f"lr {row.lr:.3g}")
    if row.grad_norm is not None:
        parts.append(f"grad {row.grad_norm:.3g}")
    if row.tokens_per_s is not None:
        parts.append(f"{row.tokens_per_s:,.0f} tok/s")
    return "  ".join(parts)


def cmd_logs(args) -> int:
    from dataclasses import asdict

    from ..core.jobs import JobFiles, follow_metrics, get_job

    ctx = context(args, starter=False)
    job = get_job(ctx, args.job_id)
    if args.output:
        path = JobFiles(ctx, args.job_id).stdout
        text = path.read_text(errors="replace") if path.exists() else ""
        if args.json:
            print(json.dumps({"job_id": job.id, "path": str(path), "output": text}))
        else:
            sys.stdout.write(text)
        return 0
    if not args.follow:
        rows = ctx.registry.metrics(args.job_id, after_id=args.after_id)
        emit(args, rows, lambda rs: "\n".join(render_metric(r) for r in rs) if rs else "no metrics yet")
        return 0
    # --follow: one line per row as it is written (JSON lines with --json), then the final status.
    if not args.json:
        info(f"following job {job.id} ({job.status}); Ctrl-C stops following, not the job")
    for row in follow_metrics(ctx, args.job_id, after_id=args.after_id):
        print(json.dumps(asdict(row)) if args.json else render_metric(row), flush=True)
    final = get_job(ctx, args.job_id)
    info(f"job {final.id}: {final.status}" + (f": {final.error.splitlines()[-1]}" if final.error else ""))
    return 0


def cmd_cancel(args) -> int:
    from ..core.jobs import cancel_job

    ctx = context(args, starter=False)
    job = cancel_job(ctx, args.job_id, force=args.force, timeout=args.timeout)
    if job.status in ("queued", "running"):
        message = (f"asked job {job.id} to stop (SIGTERM): it saves a checkpoint and ends cancelled; "
                   f"cancel again or pass --force to kill it")
    else:
        message = f"job {job.id}: {job.status}" + (
            f" (checkpoint {job.last_checkpoint})" if job.last_checkpoint else "")
    emit(args, job, lambda _: message)
    return 0


def cmd_resume(args) -> int:
    from ..core.jobs import resume_job

    ctx = context(args, starter=False)
    job = resume_job(ctx, args.job_id)
    start = f"from {job.last_checkpoint}" if job.last_checkpoint else "from the start (no complete checkpoint)"
    emit(args, job, lambda j: f"resumed job {j.id} {start}; follow it with `workbench jobs logs {j.id} -f`")
    return 0


def cmd_wait(args) -> int:
    from ..core.jobs import wait_job

    ctx = context(args, starter=False)
    job = wait_job(ctx, args.job_id, timeout=args.timeout)
    emit(args, job, lambda j: f"job {j.id}: {j.status}" + (f"\n{j.error}" if j.error else ""))
    return 0 if job.status == "completed" else 1


def cmd_register(args) -> int:
    from ..core.jobs import register_job_model

    ctx = context(args, starter=False)
    record = register_job_model(ctx, args.job_id, name=args.name)
    emit(args, record, lambda r: f"registered '{r.name}' from job {args.job_id} ({r.params:,} parameters)")
    return 0


def cmd_rm(args) -> int:
    from ..core.job_removal import remove_job
    from ..core.units import removed_job_text

    ctx = context(args, starter=False)
    emit(args, remove_job(ctx, args.job_id), removed_job_text)
    return 0


# ---------------------------------------------------------------- `workbench train --detach`


def add_detach_flags(parser) -> None:
    """The background-job flags of `workbench train` (see train_cmds)."""
    group = parser.add_argument_group("background job (--detach)")
    group.add_argument("--detach", action="store_true",
                       help="run as a background job that outlives this terminal; prints its id and returns")
    group.add_argument("--nproc", type=int, default=1, help="processes (ranks) under torchrun; the batch is split")
    group.add_argument("--nnodes", type=int, default=1, help="machines taking part (torchrun)")
    group.add_argument("--node-rank", type=int, default=0, help="this machine's rank among --nnodes")
    group.add_argument("--master-addr", default=None, help="address of node 0 (with --nnodes > 1)")
    group.add_argument("--master-port", type=int, default=None, help="port on node 0 (default 29500)")
    group.add_argument("--max-concurrent", type=int, default=None,
                       help="jobs that may run at once on this device (default $WORKBENCH_MAX_JOBS or 1); "
                            "more wait queued")


def cmd_train_detached(args) -> int:
    from ..core.errors import WorkbenchError
    from ..core.jobs import launch_job
    from .train_config import config_from_args

    if getattr(args, "resume", False):
        raise WorkbenchError("--resume does not combine with --detach; resume a job with `workbench jobs resume ID`")
    config = config_from_args(args)
    ctx = context(args)
    job = launch_job(ctx, config, nproc=args.nproc, nnodes=args.nnodes, node_rank=args.node_rank,
                     master_addr=args.master_addr, master_port=args.master_port,
                     max_concurrent=args.max_concurrent)
    emit(args, job, lambda j: f"started job {j.id} (pid {j.pid}) training '{j.out_model}'; "
                              f"follow it with `workbench jobs logs {j.id} -f`")
    return 0


def check_not_detached(args) -> None:
    """Multi-process flags only make sense for background jobs."""
    from ..core.errors import WorkbenchError

    if args.nproc != 1 or args.nnodes != 1 or args.master_addr or args.max_concurrent:
        raise WorkbenchError("--nproc, --nnodes, --master-addr and --max-concurrent need --detach "
                             "(multi-process and queued runs are background jobs)")
