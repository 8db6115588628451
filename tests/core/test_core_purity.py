import subprocess
import sys


def test_core_loads_no_orchestration_or_plotting_modules():
    code = (
        "import sys, core, core.data, core.network, core.training, core.gradcheck;"
        "import core.schedules;"
        "bad = [m for m in ('optuna', 'pandas', 'matplotlib', 'joblib', 'sweep')"
        " if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
