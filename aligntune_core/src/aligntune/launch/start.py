"""`python -m aligntune.launch.start accelerate|torchrun ARGS...`: start the training processes through accelerate's
or torch's launcher, and end with one line (not the launcher's traceback) when processes fail: each process has
already printed its own error."""

from __future__ import annotations

import subprocess
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    launcher, args = argv[0], argv[1:]
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        if launcher == "accelerate":
            from accelerate.commands.launch import launch_command, launch_command_parser

            launch_command(launch_command_parser().parse_args(args))
        else:
            from torch.distributed.run import get_args_parser, run

            run(get_args_parser().parse_args(args))
    except ChildFailedError as exc:
        ranks = sorted(exc.failures)  # keyed by global rank
        print(f"aligntune: error: training process(es) {', '.join(map(str, ranks))} failed; their errors are above",
              file=sys.stderr)
        codes = [failure.exitcode for failure in exc.failures.values() if failure.exitcode > 0]
        return codes[0] if codes else 1  # e.g. 2 for a configuration error, as in one process
    except subprocess.CalledProcessError as exc:
        print(f"aligntune: error: the training process failed (exit status {exc.returncode}); its error is above",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
