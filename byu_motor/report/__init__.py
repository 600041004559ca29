"""Self-contained HTML pages: the run report (:mod:`.run_report`) and the label review page (:mod:`.review_page`).

Pages open from disk with no network and no server: images are embedded as data URIs or written beside the page,
and every text is HTML-escaped (:mod:`.page`).
"""
