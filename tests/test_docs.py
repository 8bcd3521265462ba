"""Every setting is documented."""

from pathlib import Path

from jupyter_tus.app import TusApp

DOCS = Path(__file__).parent.parent / "docs" / "settings.md"


def test_every_setting_is_documented():
    text = DOCS.read_text()
    for name, trait in TusApp.class_own_traits(config=True).items():
        assert f"| `{name}` |" in text, f"docs/settings.md lacks {name}"
        assert trait.help, f"{name} has no help string"
