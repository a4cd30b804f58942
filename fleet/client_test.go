package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lemonade-lb/lemonade/loadbalancer/config"
)

// writePEM writes a self-signed certificate and its key, and returns their paths.
func writePEM(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// The TLS files are read at Dial, and each bad one is an error naming its key.
func TestDialTLSFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key := writePEM(t, dir)
	good := config.EtcdTLS{CAFile: cert, CertFile: cert, KeyFile: key}
	c, err := tlsConfig(good)
	if err != nil || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Fatalf("tlsConfig = %+v, %v", c, err)
	}
	e := config.Default().Discovery.Etcd
	e.Endpoints, e.TLS = []string{"127.0.0.1:1"}, good
	cli, err := Dial(e)
	if err != nil {
		t.Fatalf("Dial with TLS: %v", err)
	}
	cli.Close()

	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for tls, want := range map[config.EtcdTLS]string{
		{CAFile: filepath.Join(dir, "missing.pem")}: "discovery.etcd.tls.ca_file",
		{CAFile: notPEM}:                  "no PEM certificate",
		{CertFile: cert, KeyFile: notPEM}: "discovery.etcd.tls.cert_file/key_file",
	} {
		e.TLS = tls
		if _, err := Dial(e); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v; want an error saying %q", tls, err, want)
		}
	}
}
