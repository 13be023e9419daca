"""reward: see DESIGN.md §2 for what this package owns.

Rule evaluators (WebArena's semantics, for the sandbox sites and real WebArena alike):
``reward.rules.evaluate`` and ``RuleResult``; the eval-config schema in ``reward.rule_config``; string
rules in ``reward.text_match``; url_match in ``reward.url_match``; program_html pages in
``reward.page_checks``; fuzzy-match judges in ``reward.judge``.
"""
