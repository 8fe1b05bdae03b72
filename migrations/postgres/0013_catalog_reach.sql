-- When a catalog version reaches the stores registered under an earlier one: at its effective
-- time, at each store's next period start, or never (grandfathered). Versions published before
-- this column reached every store at their effective time, which is what the default says.

ALTER TABLE catalog_versions
    ADD COLUMN existing_stores text NOT NULL DEFAULT 'effective_time'
    CHECK (existing_stores IN ('effective_time', 'next_period', 'never'));
