"""Small pieces every component shares: typed settings from the environment, logging setup."""
