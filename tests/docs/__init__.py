"""The documentation's tests: the README's quickstarts, the API reference's coverage and the
offline guard the site is built under; scripts/test runs them in its docs suite."""
