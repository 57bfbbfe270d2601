"""User-facing errors: one line, naming the problem, exit code 2 at the CLI."""


class BenchError(Exception):
    """A problem with the user's input (config key, file, value). The CLI prints it as one line."""

    exit_code = 2


class SettingError(ValueError):
    """A bad field of a settings object (bench.neurons.NeuronSettings, bench.energy's
    EnergySettings): `key` names the field, `detail` says why. The run config turns it into a
    BenchError naming its config key."""

    template = "setting '{key}': {detail}"

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(self.template.format(key=key, detail=detail))
        self.key, self.detail = key, detail


def one_line(exc: BaseException) -> str:
    """'Type: first line of the message' (or the type alone): how a run record and a sweep
    trial state the error that ended them."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
