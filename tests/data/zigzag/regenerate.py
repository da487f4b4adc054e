"""Regenerate ``resnet18_asic65.csv``: ZigZag 3.9's cost of a few layers of CIFAR ResNet18 as hwsim exports them.

    python tests/data/zigzag/regenerate.py --zigzag-python /work/venv-hwtools/bin/python

``hwsim export resnet18 --variant oat --format zigzag`` (asic65: a 25 x 7 array, one weight memory of 64-bit
accesses at 274 pJ, unit energy 0.57 pJ, free activation memories), its workload cut to the layers below (ZigZag
takes 6-8 s per layer on an idle core), run by the ``run_zigzag.py`` the export writes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAYERS = ("conv1", "layer1.0.conv1", "layer2.0.conv1", "layer2.0.shortcut.0", "layer4.1.conv2", "linear",
          "layer1.0.conv1.film_mlp1", "layer1.0.conv1.film_mlp2", "layer1.0.conv1.film_affine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zigzag-python", default="python")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent.parent.parent))
    import yaml

    from hwsim.cost import ModelSetting
    from hwsim.export import export

    with tempfile.TemporaryDirectory(prefix="hwsim-zigzag-") as tmp:
        out = Path(tmp) / "zz"
        export(ModelSetting("resnet18", "oat"), "zigzag", out)
        path = out / "resnet18_oat.yaml"
        layers = [layer for layer in yaml.safe_load(path.read_text()) if layer["name"] in LAYERS]
        for i, layer in enumerate(layers):
            layer["id"], layer["operand_source"] = i, {"I": i}
        path.write_text(yaml.safe_dump(layers, sort_keys=False))
        run = subprocess.run([args.zigzag_python, "run_zigzag.py"], cwd=out, check=True, capture_output=True,
                             text=True)
    (HERE / "resnet18_asic65.csv").write_text(run.stdout)
    print(run.stdout)


if __name__ == "__main__":
    main()
