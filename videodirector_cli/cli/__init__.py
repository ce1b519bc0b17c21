"""Typer commands: parse, call a stage, print. No tensor math and no file layout here."""
