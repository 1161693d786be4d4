"""docs/configuration.md is generated from the settings' descriptions and is current; every setting has one."""

from __future__ import annotations

from pydantic import Field

from tools import settings_doc
from tools.config import Settings


def test_every_setting_has_a_description():
    assert [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()] == []


def test_the_generated_configuration_page_is_current():
    assert settings_doc.DOC.read_text() == settings_doc.render(), "run: python -m tools.settings_doc"
    assert settings_doc.main(["--check"]) == 0


def test_the_check_fails_on_a_stale_page(tmp_path, monkeypatch):
    stale = tmp_path / "configuration.md"
    stale.write_text(settings_doc.render().replace("LOCALEDIT_MAX_SIDE", "LOCALEDIT_MAX_SIZE"))
    monkeypatch.setattr(settings_doc, "DOC", stale)
    assert settings_doc.main(["--check"]) == 1
    assert settings_doc.main([]) == 0 and stale.read_text() == settings_doc.render()


def test_the_page_lists_every_setting_under_its_section_with_its_default_and_range():
    text = settings_doc.render()
    assert all(f"`LOCALEDIT_{name.upper()}`" in text or name in ("llm_base_url", "llm_api_key")
               for name in Settings.model_fields)
    assert "`LOCALEDIT_LLM_BASE_URL` or `OPENAI_BASE_URL`" in text
    assert "| `LOCALEDIT_MAX_SIDE` | `512` | >= 64, <= 2048 |" in text
    assert "| `LOCALEDIT_CACHE_BYTES` | `536870912 (512 MiB)` |" in text
    assert "`vit_b`, `vit_l`, `vit_h`" in text and "## Chat UI (localedit chat)" in text


def test_a_field_without_a_description_is_found(monkeypatch):
    class Bare(Settings):
        undocumented: int = Field(3)

    assert [n for n, f in Bare.model_fields.items() if not (f.description or "").strip()] == ["undocumented"]
