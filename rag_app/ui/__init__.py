"""Gradio chat UI: a thin shell over the application's services."""
