package main

// WorkerCmd runs one demo worker.
type WorkerCmd struct {
	Framework string `short:"f" required:"" help:"Web framework: nethttp, gin, echo, fasthttp or fiber."`
	Config    string `short:"c" help:"Config file (.json, .toml, .yaml or .yml)." placeholder:"FILE"`
	Address   string `short:"a" help:"Listen address (default 127.0.0.1:50200)." placeholder:"ADDR"`
	Name      string `short:"n" help:"Service name reported in responses (default lemonade-worker)."`
	Delay     string `short:"d" help:"Work delay: integer milliseconds or a duration like 20ms (default 20)." placeholder:"MS"`
}
