"""Links to the systems a centre already runs (issue 18): the durable delivery queue
(``queue``), where traffic may go (``targets``), and what is sent (``evaluations``,
``http``; alert channels and the help-desk feed alongside)."""
