"""3 Train: a form for a new job (validated as you type, with the equivalent `workbench train` command),
the job list, and for the selected job a live loss chart, progress with ETA, tokens/s, learning rate and
the tail of its log; cancel and resume.

Jobs are detached processes started through core.jobs.launch_job (as `workbench train --detach`): they
keep running when the app closes, and the app re-attaches to them (and to jobs started from the CLI)
because everything it shows comes from the registry. A thread worker polls the registry once a second;
the chart is redrawn only when new metric rows arrive."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from rich.text import Text
from textual.widgets import DataTable, Label, ProgressBar, RichLog, TabbedContent, TabPane

from ...core.errors import WorkbenchError
from ..format import duration, number
from ..widgets.loss_chart import LossChart
from ..widgets.tables import refill, selected_key
from .base import WorkbenchScreen
from .dialogs import ConfirmDialog, FormDialog, FormField
from .train_form import TrainForm, train_command  # noqa: F401 - train_command re-exported for tests

POLL_S = 1.0
REFRESH_STATUS_EVERY = 5  # polls between refresh_statuses calls (dead/stale job detection)
LOG_TAIL_BYTES = 8192
LOG_LINES = 200
FINISHED = ("completed", "failed", "cancelled", "interrupted")


class JobsPolled(Message):
    """What the poll worker read: the job list, and new rows / log tail of the watched job."""

    def __init__(self, jobs: list, job_id: int | None, rows: list, log_tail: str | None, generation: int,
                 log_size: int = -1):
        super().__init__()
        self.log_size = log_size
        self.jobs = jobs
        self.job_id = job_id
        self.rows = rows
        self.log_tail = log_tail
        self.generation = generation


class TrainScreen(WorkbenchScreen):
    """Training jobs: start one (n: the New-job form, ctrl+r starts it), watch its loss, progress and log
    live; cancel (c), resume (u), register the last checkpoint of a stopped job as a model (g), or
    delete an ended job (d). Jobs keep running when the app closes."""

    MODE = "train"
    BINDINGS = [
        Binding("n", "new_job", "New", tooltip="A new job (the New job tab)"),
        Binding("j", "show_jobs", "Jobs", show=False),
        Binding("ctrl+r", "start", "Start"),
        Binding("c", "cancel", "Cancel"),
        Binding("u", "resume", "Resume"),
        Binding("g", "register", "Register", tooltip="Register a stopped job's last checkpoint as a model"),
        Binding("d", "delete", "Delete", tooltip="Delete an ended job: its checkpoints, logs and metrics"),
        Binding("l", "log_scale", "Log scale", show=False),
        Binding("escape", "show_jobs", "Jobs", show=False),
    ]

    def __init__(self):
        super().__init__()
        self.watched: int | None = None  # job shown in the chart
        self.after_id = 0  # last metric row id read for it
        self.generation = 0  # bumps when the watched job changes: stale poll results are dropped
        self.polls = 0
        self.jobs: list = []
        self.last_rows: dict[str, object] = {}
        self.first_train: tuple[int, float] | None = None  # (step, time) of the first train row seen
        self._log_size = -1
        self._poll_error: str | None = None

    # ------------------------------------------------------------ layout

    def compose_body(self) -> ComposeResult:
        with TabbedContent(id="train-tabs", initial="jobs-pane"):
            with TabPane("Jobs (j)", id="jobs-pane"):
                with Horizontal(id="jobs-body"):
                    table = DataTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
                    table.border_title = "Jobs"
                    yield table
                    with Vertical(id="job-view"):
                        yield Label("No job selected: press n to start one.", id="job-title", markup=False)
                        yield LossChart(id="loss-chart")
                        with Horizontal(id="job-progress-row"):
                            yield ProgressBar(total=100, show_eta=False, id="job-progress")
                            yield Label("", id="job-stats", markup=False)
                        # min_width: RichLog wraps at 78 columns by default, wider than this pane at
                        # 80x24, which hid the middle of every long line.
                        log = RichLog(id="job-log", max_lines=LOG_LINES, wrap=True, markup=False,
                                      highlight=False, auto_scroll=True, min_width=20)
                        log.border_title = "Log"
                        yield log
            with TabPane("New job (n)", id="new-pane"):
                yield TrainForm(self.ctx, id="train-form")

    def on_mount(self) -> None:
        self.refresh_data()
        self.poll()
        self.set_interval(POLL_S, self.poll, name="jobs poll")
        self.query_one("#jobs-table", DataTable).add_columns("ID", "Status", "Model", "Step")
        self.query_one("#jobs-table", DataTable).focus()

    # ------------------------------------------------------------ form

    def refresh_data(self) -> None:
        try:
            form = self.query_one(TrainForm)
        except Exception:  # noqa: BLE001 - not composed yet
            return
        registry = self.ctx.registry
        models = registry.list_models()
        taken = {m.name for m in models} | {j.out_model for j in self.jobs}
        form.refresh_choices([m.name for m in models if not m.adapter],
                             [d.name for d in registry.list_datasets()], taken)

    def use_base_model(self, name: str) -> None:
        """Called by "fine-tune from" on the Models screen."""
        self.refresh_data()
        self.query_one(TrainForm).use_base_model(name)
        self.action_new_job()

    def action_new_job(self) -> None:
        self.query_one("#train-tabs", TabbedContent).active = "new-pane"
        self.query_one("#t-base_model").focus()

    def action_show_jobs(self) -> None:
        self.query_one("#train-tabs", TabbedContent).active = "jobs-pane"
        self.query_one("#jobs-table", DataTable).focus()

    def action_start(self) -> None:
        if self.query_one("#train-tabs", TabbedContent).active != "new-pane":
            self.action_new_job()
        self.query_one(TrainForm).start()

    def on_train_form_start_requested(self, message: TrainForm.StartRequested) -> None:
        from ...core.jobs import launch_job

        ctx, config = self.ctx, message.config
        self.query_one("#train-start").disabled = True
        self.run_in_thread("launch", lambda: launch_job(ctx, config),
                           lambda job: f"job {job.id} started: {job.base_model} -> {job.out_model}")

    # ------------------------------------------------------------ jobs

    def on_operation_failed(self, message) -> None:
        if message.group == "jobs-poll":  # said once, not every second
            message.prevent_default()
            if message.text != self._poll_error:
                self._poll_error = message.text
                self.wb.report_error(message.text)

    def operation_ended(self, group: str, ok: bool, data=None) -> None:
        if group == "launch":
            self.query_one("#train-start").disabled = False
            if ok and data is not None:
                form = self.query_one(TrainForm)
                form.taken.add(data.out_model)
                form.reset()  # the next job starts from the defaults
                self.watch_job(data.id)
                self.action_show_jobs()
                self.poll()
        elif group in ("job-control", "register"):
            self.poll()
        elif group == "job-delete" and ok:
            self.watch_job(None)  # the next poll shows the newest job left
            self.poll()

    @property
    def selected_job(self) -> int | None:
        key = selected_key(self.query_one("#jobs-table", DataTable))
        return None if key is None else int(key)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "jobs-table" and event.row_key is not None:
            job_id = int(event.row_key.value)
            if job_id != self.watched:
                self.watch_job(job_id)
                self.poll()

    def watch_job(self, job_id: int | None) -> None:
        self.watched = job_id
        self.after_id = 0
        self.generation += 1
        self.last_rows = {}
        self.first_train = None
        self._log_size = -1
        job = next((j for j in self.jobs if j.id == job_id), None)
        self.query_one(LossChart).reset(f"Loss: job {job_id}" + (f", {job.out_model}" if job else "")
                                        if job_id is not None else "Loss")
        self.query_one("#job-log", RichLog).clear()
        self.show_job()

    def poll(self) -> None:
        self.polls += 1
        self._poll(self.watched, self.after_id, self.generation, self.polls % REFRESH_STATUS_EVERY == 1,
                   self._log_size)

    @work(thread=True, exclusive=True, group="jobs-poll", exit_on_error=False)
    def _poll(self, job_id: int | None, after_id: int, generation: int, refresh: bool, log_size: int) -> None:
        from ...core import jobs as core_jobs

        try:
            if refresh:
                core_jobs.refresh_statuses(self.ctx)
            registry = self.ctx.registry
            jobs = registry.list_jobs()
            rows, tail, size = [], None, -1
            if job_id is not None:
                rows = registry.metrics(job_id, after_id=after_id)
                log_path = core_jobs.JobFiles(self.ctx, job_id).stdout
                try:
                    size = log_path.stat().st_size
                except FileNotFoundError:
                    size = 0
                if size != log_size and size > 0:
                    tail = _read_tail(log_path)
            self.post_message(JobsPolled(jobs, job_id, rows, tail, generation, size))
        except Exception as error:  # noqa: BLE001 - a failed poll is reported, the next one retries
            self.fail("jobs-poll", error)

    def on_jobs_polled(self, message: JobsPolled) -> None:
        self._update_table(message.jobs)
        if message.generation != self.generation:
            return
        if self.watched is None and self.jobs:
            self.watch_job(self.jobs[-1].id)  # the newest job, until the user picks one
            self.poll()
            return
        if message.rows:
            self.after_id = message.rows[-1].id
            for row in message.rows:
                self.last_rows[row.split] = row
                if row.split == "train" and self.first_train is None and row.created_at:
                    self.first_train = (row.step, row.created_at)
            self.query_one(LossChart).add(message.rows)
        if message.log_tail is not None:
            log = self.query_one("#job-log", RichLog)
            log.clear()
            for line in message.log_tail.splitlines()[-LOG_LINES:]:
                log.write(Text(line), scroll_end=True)  # long lines wrap; the pane follows the newest
            self._log_size = message.log_size  # read again when it changes
        self.show_job()

    def _update_table(self, jobs: list) -> None:
        table = self.query_one("#jobs-table", DataTable)
        signature = [(j.id, j.status, j.step, j.total_steps) for j in jobs]
        if signature == [(j.id, j.status, j.step, j.total_steps) for j in self.jobs] and table.row_count:
            self.jobs = jobs
            return
        finished = {j.id for j in jobs if j.status == "completed"} - {
            j.id for j in self.jobs if j.status == "completed"}
        had_jobs, self.jobs = bool(self.jobs), jobs
        if finished and had_jobs:  # a job registered its model: every model list should show it
            self.wb.registry_changed.publish("models")
        keep = None if self.watched is None else str(self.watched)
        rows = [(str(job.id), [str(job.id), job.status, job.out_model, f"{job.step}/{job.total_steps}"])
                for job in reversed(jobs)]  # newest first
        refill(table, rows, keep, quiet=True)

    def show_job(self) -> None:
        title = self.query_one("#job-title", Label)
        progress = self.query_one("#job-progress", ProgressBar)
        stats = self.query_one("#job-stats", Label)
        job = next((j for j in self.jobs if j.id == self.watched), None)
        if job is None:
            title.update("No job selected: press n to start one." if not self.jobs else "")
            stats.update("")
            return
        data = f" on {job.dataset}" if job.dataset else ""
        text = f"job {job.id}: {job.base_model} -> {job.out_model}{data}  [{job.status}]"
        if job.error and job.status in ("failed", "interrupted", "cancelled"):
            text += f"  {job.error}"
        title.update(text)
        progress.update(total=max(1, job.total_steps), progress=min(job.step, job.total_steps))
        train, val = self.last_rows.get("train"), self.last_rows.get("val")
        parts = [f"{job.step}/{job.total_steps}"]
        if job.status == "running" and train is not None and self.first_train and train.created_at:
            step0, t0 = self.first_train
            if train.step > step0 and train.created_at > t0:
                rate = (train.step - step0) / (train.created_at - t0)
                parts.append(f"ETA {duration((job.total_steps - job.step) / rate)}")
        if train is not None:
            if train.tokens_per_s:
                parts.append(f"{train.tokens_per_s:,.0f} tok/s")
            if train.lr is not None:
                parts.append(f"lr {train.lr:.2e}")
            parts.append(f"train {number(train.loss)}")
        if val is not None:
            parts.append(f"val {number(val.loss)}")
        stats.update(" · ".join(parts))

    def action_log_scale(self) -> None:
        chart = self.query_one(LossChart)
        chart.toggle_log_scale()
        self.notify(f"loss axis: {'log' if chart.log_scale else 'linear'} scale", timeout=2)

    def action_cancel(self) -> None:
        job_id = self.watched
        job = next((j for j in self.jobs if j.id == job_id), None)
        if job is None or job.status not in ("queued", "running"):
            self.wb.report_error("select a queued or running job to cancel")
            return

        def done(answer) -> None:
            if answer is None:
                return
            from ...core.jobs import cancel_job

            ctx = self.ctx
            self.run_in_thread("job-control", lambda: cancel_job(ctx, job_id),
                               f"cancelling job {job_id}: it saves a checkpoint, then stops")

        self.app.push_screen(ConfirmDialog(f"Cancel job {job_id} ({job.out_model})? It saves a checkpoint "
                                           "first and can be resumed later."), done)

    def action_resume(self) -> None:
        job_id = self.watched
        if job_id is None:
            self.wb.report_error("select a job to resume")
            return
        from ...core.jobs import resume_job

        ctx = self.ctx
        self.watch_job(job_id)
        self.run_in_thread("job-control", lambda: resume_job(ctx, job_id), f"job {job_id} resumed")


    def action_delete(self) -> None:
        job = next((j for j in self.jobs if j.id == self.watched), None)
        if job is None or job.status not in FINISHED:
            self.wb.report_error("select an ended job to delete (cancel a running one first)")
            return

        def done(answer) -> None:
            if answer is None:
                return
            from ...core.job_removal import remove_job
            from ...core.units import removed_job_text

            ctx = self.ctx
            self.run_in_thread("job-delete", lambda: remove_job(ctx, job.id), removed_job_text)

        self.app.push_screen(ConfirmDialog(f"Delete job {job.id} ({job.out_model}, {job.status})? Its "
                                           "checkpoints, logs and loss history go; models it made stay."), done)

    def action_register(self) -> None:
        """A cancelled (or failed) job's last complete checkpoint becomes a model, named by the user."""
        job = next((j for j in self.jobs if j.id == self.watched), None)
        if job is None or job.status not in FINISHED or job.status == "completed":
            self.wb.report_error("select a cancelled, failed or interrupted job to register its checkpoint")
            return
        from ...core.jobs import checkpoint_step, latest_checkpoint

        checkpoint = latest_checkpoint(self.ctx, job.id)
        if checkpoint is None:
            self.wb.report_error(f"job {job.id} has no complete checkpoint to register")
            return
        step = checkpoint_step(checkpoint)

        def check_name(value: str) -> None:
            from ...core.models import validate_name

            validate_name(value)
            if self.ctx.registry.find_model(value):
                raise WorkbenchError(f"a model named '{value}' is already registered")

        def done(values: dict | None) -> None:
            if not values:
                return
            from ...core.jobs import register_job_model

            ctx, job_id = self.ctx, job.id
            self.run_in_thread("register", lambda: register_job_model(ctx, job_id, values["name"]),
                               lambda r: f"registered '{r.name}' from job {job_id} (step {step})",
                               changed="models")

        fields = [FormField("name", "Model name", f"{job.out_model}-step{step}", check=check_name)]
        self.app.push_screen(FormDialog(f"Register job {job.id}'s checkpoint at step {step}", fields,
                                        submit_label="Register"), done)


def _read_tail(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - LOG_TAIL_BYTES))
        data = handle.read()
    text = data.decode("utf-8", errors="replace")
    if size > LOG_TAIL_BYTES:
        text = text.split("\n", 1)[-1]
    # progress bars rewrite one line with carriage returns: keep the last state of each line
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines())
