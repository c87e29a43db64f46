"""The AI video director without ComfyUI: an OpenAI-compatible chat client (``client``, its waits in ``waiting``,
the admin's rules in ``policy``, secrets kept out of messages by ``redact``), the prompts it sends (``prompts``), how
answers are read (``answers``), the pictures it shows (``media``), and the jobs: motion advice (``advisor``),
storyboards (``storyboard``), a soundtrack from the user's audio folders (``soundtrack``, ``audio``). The nodes are in
``nodes/director/``; the optional ``openai`` package is loaded only when a request is sent."""
